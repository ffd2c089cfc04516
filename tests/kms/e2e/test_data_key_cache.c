/*
 * test_data_key_cache: libkmsclient's data-key cache (kms/data_key_cache.h)
 * against a real kmsd on a real SoftHSM token. Every GenerateDataKey and
 * Decrypt the cache claims to have saved is counted where it cannot lie:
 * in kmsd's audit log (each request is durable there before its reply),
 * read back through the offline verifier. Each case uses keys of its own,
 * so the log's entries for a key are that case's calls.
 *
 * The bounds (messages, bytes, age: the age by waiting until the clock has
 * passed it, never by sleeping a guess), the id (key reference as given,
 * canonical context, so the pairs' order does not matter), 16 threads on
 * one cold entry (exactly one call, and behind a gate that holds kmsd's
 * answer until all 15 others are seen waiting: exactly 15 coalesced), a
 * failed fetch (disabled key, a policy's Deny, all waiters failed alike,
 * nothing cached), the decrypt side, capacity's LRU eviction, and limits
 * refused with the bound named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include <kms/client.h>
#include <kms/data_key_cache.h>

#include "tests/support/audit_check.h"
#include "tests/support/harness.h"

#define CALL_TIMEOUT_MS 10000
#define GATE_CALL_TIMEOUT_MS 30000
#define WAIT_MS 20000          /* any wait for an event */
#define THREADS 16
#define HOUR_MS (3600u * 1000u)
#define MARK_POLLS 600         /* x 50 ms: the audit log catching up */

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

static harness H;
static kms_client *C;
static unsigned marks;

static const kms_context_pair ctx_a[] = { { "tenant", "a" }, { "region", "x" } };
static const kms_context_pair ctx_a_reordered[] = { { "region", "x" }, { "tenant", "a" } };
static const kms_context_pair ctx_b[] = { { "tenant", "b" }, { "region", "x" } };
static const kms_context_pair ctx_c[] = { { "tenant", "c" } };

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static kms_client *open_client(const char *url, int timeout_ms)
{
	const char *endpoints[] = { url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = timeout_ms };
	kms_client *c = NULL;
	kms_error err;
	kms_status st = kms_client_open(&opts, &c, &err);
	CHECK(st == KMS_OK, "kms_client_open %s: %s", url, err.message);
	return c;
}

static int setup(void **state)
{
	(void)state;
	/* Checkpoints every 50 ms: each case reads its counts from the
	 * published log. */
	harness_options o = { .extra_config = "[audit]\ncheckpoint_ms = 50\n" };
	if (!harness_start(&H, &o))
		return -1;
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = CALL_TIMEOUT_MS };
	kms_error err;
	if (kms_client_open(&opts, &C, &err) != KMS_OK) {
		fprintf(stderr, "kms_client_open: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kms_client_close(C);
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d on SIGTERM; see %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

/* A fresh key of the case's own (out holds KMS_KEY_ID_MAX + 1). */
static void new_key(const char *description, char *out)
{
	kms_create_key_params p = { .description = description };
	kms_key_metadata md;
	kms_error err;
	kms_status st = kms_create_key(C, &p, &md, &err);
	CHECK(st == KMS_OK, "create key: %s", err.message);
	snprintf(out, KMS_KEY_ID_MAX + 1, "%s", md.key_id);
	kms_key_metadata_free(&md);
}

static kms_data_key_cache *new_cache(kms_client *client, uint32_t max_age_ms,
                                     uint64_t max_messages, uint64_t max_bytes,
                                     uint32_t capacity)
{
	kms_data_key_cache_limits l = { .max_age_ms = max_age_ms, .max_messages = max_messages,
	                                .max_bytes = max_bytes, .capacity = capacity };
	kms_data_key_cache *c = NULL;
	kms_error err;
	kms_status st = kms_data_key_cache_new(client, &l, &c, &err);
	CHECK(st == KMS_OK, "kms_data_key_cache_new: %s", err.message);
	return c;
}

static kms_data_key_cache_stats stats_of(kms_data_key_cache *c)
{
	kms_data_key_cache_stats s;
	kms_data_key_cache_stats_get(c, &s);
	return s;
}

static void encrypt_ok(kms_data_key_cache *c, const char *key, const kms_context_pair *ctx,
                       size_t n, uint64_t bytes, kms_data_key *out)
{
	kms_error err;
	kms_status st = kms_data_key_cache_encrypt_key(c, key, ctx, n, bytes, out, &err);
	CHECK(st == KMS_OK, "encrypt_key %s: %s: %s", key, kms_status_name(st), err.message);
	CHECK(out->plaintext && out->plaintext_len == KMS_DATA_KEY_LEN && out->blob &&
	      out->blob_len > 0 && out->key_id[0] && out->key_version >= 1,
	      "encrypt_key %s: the data key is not filled in", key);
}

/* Encrypts and drops the key. */
static void encrypt_drop(kms_data_key_cache *c, const char *key, const kms_context_pair *ctx,
                         size_t n, uint64_t bytes)
{
	kms_data_key dk;
	encrypt_ok(c, key, ctx, n, bytes, &dk);
	kms_data_key_free(&dk);
}

static bool same_key(const kms_data_key *a, const kms_data_key *b)
{
	return a->blob_len == b->blob_len && !memcmp(a->blob, b->blob, a->blob_len) &&
	       a->plaintext_len == b->plaintext_len &&
	       !memcmp(a->plaintext, b->plaintext, a->plaintext_len);
}

/* ---- counting in the audit log ---- */

typedef struct audit_counts {
	size_t all, ok;
	size_t failed_precondition, access_denied;
} audit_counts;

/*
 * kmsd's entries with operation op on key, once the log has them all: a
 * Health with a fresh request id is sent after the calls being counted
 * (they were durable in the log before their replies, so they precede it);
 * the published log is read until it holds that Health.
 */
static audit_counts audit_count(const char *op, const char *key)
{
	char mark[48];
	snprintf(mark, sizeof mark, "dkc-mark-%u", ++marks);
	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = mark;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	Kms__Response *r = harness_call(&H, &req);
	CHECK(r && r->status == KMS__STATUS__OK, "Health %s: no OK answer", mark);
	kms__response__free_unpacked(r, NULL);

	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	uint64_t deadline = mono_ms() + WAIT_MS;
	for (int i = 0; i < MARK_POLLS; i++) {
		audit_cp cp;
		audit_get_checkpoint(&H, &cp);
		audit_entries e;
		audit_load(pub, cp.vkey, NULL, &e);
		audit_cp_free(&cp);
		if (audit_count_id(&e, mark, NULL) == 1) {
			audit_counts n = { 0 };
			for (uint64_t j = 0; j < e.n; j++) {
				json_t *x = e.items[j];
				if (strcmp(audit_str(x, "operation"), op) ||
				    strcmp(audit_str(x, "key_id"), key))
					continue;
				const char *status = audit_str(x, "status");
				n.all++;
				n.ok += !strcmp(status, "OK");
				n.failed_precondition += !strcmp(status, "FAILED_PRECONDITION");
				n.access_denied += !strcmp(status, "ACCESS_DENIED");
			}
			audit_entries_free(&e);
			return n;
		}
		audit_entries_free(&e);
		if (mono_ms() > deadline)
			break;
		sleep_ms(50);
	}
	fail_msg("the published audit log did not reach %s within %d ms", mark, WAIT_MS);
	return (audit_counts){ 0 };
}

/* ---- the bounds ---- */

/* max_messages 10: 100 encrypts make exactly 10 GenerateDataKey, and every
 * key handed out opens its own blob through the plain Decrypt. */
static void max_messages_bounds_the_calls(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1];
	new_key("dkc messages", key);
	kms_data_key_cache *c = new_cache(C, HOUR_MS, 10, UINT64_C(1) << 40, 0);
	enum { N = 100 };
	kms_data_key *dks = calloc(N, sizeof *dks);
	assert_non_null(dks);
	for (int i = 0; i < N; i++)
		encrypt_ok(c, key, ctx_a, 2, 100, &dks[i]);
	size_t distinct = 0;
	for (int i = 0; i < N; i++) {
		assert_string_equal(dks[i].key_id, key);
		assert_int_equal(dks[i].key_version, 1);
		/* Ten messages per key, in order: 0-9 one key, 10-19 the next. */
		if (i % 10 == 0) {
			distinct++;
			if (i > 0)
				assert_false(same_key(&dks[i], &dks[i - 1]));
		} else {
			assert_true(same_key(&dks[i], &dks[i - 1]));
		}
		kms_plaintext pt;
		kms_error err;
		kms_status st = kms_decrypt(C, dks[i].blob, dks[i].blob_len, ctx_a, 2, key, &pt, &err);
		CHECK(st == KMS_OK, "decrypt of handed-out blob %d: %s", i, err.message);
		assert_int_equal(pt.len, KMS_DATA_KEY_LEN);
		assert_memory_equal(pt.bytes, dks[i].plaintext, KMS_DATA_KEY_LEN);
		kms_plaintext_free(&pt);
	}
	/* Each caller's copy is its own: freeing them leaves nothing behind
	 * (the sanitizer lane checks) and the cache's own copy intact. */
	for (int i = 0; i < N; i++)
		kms_data_key_free(&dks[i]);
	free(dks);
	assert_int_equal(distinct, 10);
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 10);
	assert_int_equal(s.misses, 10);
	assert_int_equal(s.hits, 90);
	assert_int_equal(s.coalesced, 0);
	assert_int_equal(s.retired, 10);
	assert_int_equal(s.decrypt_calls, 0);
	kms_data_key_cache_free(c);

	audit_counts gdk = audit_count("generate_data_key", key);
	assert_int_equal(gdk.all, 10);
	assert_int_equal(gdk.ok, 10);
	assert_int_equal(audit_count("decrypt", key).ok, N);
}

/* max_bytes 1000: three 300-byte messages per key; a message over
 * max_bytes gets a fresh key of its own and leaves the cached one alone. */
static void max_bytes_retires(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1];
	new_key("dkc bytes", key);
	kms_data_key_cache *c = new_cache(C, HOUR_MS, 1000, 1000, 0);
	kms_data_key first, dk;
	encrypt_ok(c, key, ctx_a, 2, 300, &first);
	for (int i = 1; i < 10; i++) {
		encrypt_ok(c, key, ctx_a, 2, 300, &dk);
		assert_true(same_key(&dk, &first) == (i < 3));
		kms_data_key_free(&dk);
	}
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 4); /* 3 + 3 + 3 + 1 */
	assert_int_equal(s.retired, 3);

	/* 1001 bytes: past max_bytes, a fresh key, not cached... */
	kms_data_key big, last;
	encrypt_ok(c, key, ctx_a, 2, 1001, &big);
	assert_int_equal(stats_of(c).generate_calls, 5);
	/* ...and the 10th message's key still serves the next one. */
	encrypt_ok(c, key, ctx_a, 2, 300, &last);
	assert_int_equal(stats_of(c).generate_calls, 5);
	assert_false(same_key(&big, &last));
	/* Exactly the rest of max_bytes (400 of 1000 left): served, then the
	 * key is spent. */
	encrypt_ok(c, key, ctx_a, 2, 400, &dk);
	assert_true(same_key(&dk, &last));
	kms_data_key_free(&dk);
	s = stats_of(c);
	assert_int_equal(s.generate_calls, 5);
	assert_int_equal(s.retired, 4);
	encrypt_drop(c, key, ctx_a, 2, 0);
	assert_int_equal(stats_of(c).generate_calls, 6);
	kms_data_key_free(&first);
	kms_data_key_free(&big);
	kms_data_key_free(&last);
	kms_data_key_cache_free(c);
	assert_int_equal(audit_count("generate_data_key", key).ok, 6);
}

/* max_age_ms 1: once the clock has passed a millisecond since the key came
 * back, the next message gets a fresh one. */
static void max_age_retires(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1];
	new_key("dkc age", key);
	kms_data_key_cache *c = new_cache(C, 1, 1000, UINT64_C(1) << 40, 0);
	kms_data_key a, b;
	encrypt_ok(c, key, ctx_a, 2, 10, &a);
	uint64_t back = mono_ns();
	uint64_t calls = stats_of(c).generate_calls;
	assert_int_equal(calls, 1);
	/* The key was made before `back`; wait for the event (2 ms past it
	 * on the clock), polling the clock, bounded. */
	for (int i = 0; i < 100000 && mono_ns() - back < 2000000u; i++)
		sleep_ms(1);
	CHECK(mono_ns() - back >= 2000000u, "the monotonic clock did not pass 2 ms");
	encrypt_ok(c, key, ctx_a, 2, 10, &b);
	assert_false(same_key(&a, &b));
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 2);
	assert_int_equal(s.hits, 0);
	assert_int_equal(s.retired, 1);
	kms_data_key_free(&a);
	kms_data_key_free(&b);
	kms_data_key_cache_free(c);
	assert_int_equal(audit_count("generate_data_key", key).ok, 2);
}

/* ---- what an entry is ---- */

/* Another context or another key reference: another entry. The same map in
 * another order: the same entry. The decrypt side likewise, and a required
 * key_id makes its own entry. */
static void entries_by_reference_and_context(void **state)
{
	(void)state;
	char k1[KMS_KEY_ID_MAX + 1], k2[KMS_KEY_ID_MAX + 1];
	new_key("dkc ids 1", k1);
	new_key("dkc ids 2", k2);
	kms_error err;
	kms_status st = kms_create_alias(C, "alias/dkc-ids", k1, &err);
	CHECK(st == KMS_OK, "create alias: %s", err.message);
	kms_data_key_cache *c = new_cache(C, HOUR_MS, 1000, UINT64_C(1) << 40, 0);

	kms_data_key a, a2, b, other, via_alias;
	encrypt_ok(c, k1, ctx_a, 2, 10, &a);
	encrypt_ok(c, k1, ctx_a_reordered, 2, 10, &a2);
	assert_true(same_key(&a, &a2));
	assert_int_equal(stats_of(c).generate_calls, 1);
	encrypt_ok(c, k1, ctx_b, 2, 10, &b);
	assert_false(same_key(&a, &b));
	encrypt_ok(c, k2, ctx_a, 2, 10, &other);
	assert_false(same_key(&a, &other));
	assert_string_equal(other.key_id, k2);
	/* The reference as given: an alias is its own entry, resolved by kmsd. */
	encrypt_ok(c, "alias/dkc-ids", ctx_a, 2, 10, &via_alias);
	assert_false(same_key(&a, &via_alias));
	assert_string_equal(via_alias.key_id, k1);
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 4);
	assert_int_equal(s.hits, 1);

	/* A blob sealed under {tenant a, region x} opens in either order. */
	kms_plaintext p1, p2, p3;
	st = kms_data_key_cache_decrypt_key(c, a.blob, a.blob_len, ctx_a, 2, NULL, 10, &p1, &err);
	CHECK(st == KMS_OK, "decrypt_key: %s", err.message);
	st = kms_data_key_cache_decrypt_key(c, a.blob, a.blob_len, ctx_a_reordered, 2, NULL, 10,
	                                    &p2, &err);
	CHECK(st == KMS_OK, "decrypt_key (reordered): %s", err.message);
	assert_int_equal(stats_of(c).decrypt_calls, 1);
	/* Requiring the key: another entry (kmsd checks the requirement). */
	st = kms_data_key_cache_decrypt_key(c, a.blob, a.blob_len, ctx_a, 2, k1, 10, &p3, &err);
	CHECK(st == KMS_OK, "decrypt_key (key required): %s", err.message);
	assert_int_equal(stats_of(c).decrypt_calls, 2);
	assert_memory_equal(p1.bytes, a.plaintext, KMS_DATA_KEY_LEN);
	assert_memory_equal(p2.bytes, a.plaintext, KMS_DATA_KEY_LEN);
	assert_memory_equal(p3.bytes, a.plaintext, KMS_DATA_KEY_LEN);
	assert_string_equal(p2.key_id, k1);
	assert_int_equal(p2.key_version, 1);
	/* Requiring the wrong key fails, and caches nothing: twice, two calls. */
	for (int i = 0; i < 2; i++) {
		kms_plaintext bad;
		st = kms_data_key_cache_decrypt_key(c, a.blob, a.blob_len, ctx_a, 2, k2, 10, &bad,
		                                    &err);
		assert_int_not_equal(st, KMS_OK);
		assert_null(bad.bytes);
	}
	assert_int_equal(stats_of(c).decrypt_calls, 4);
	/* Another context: kmsd refuses it (the context is authenticated). */
	kms_plaintext wrong;
	st = kms_data_key_cache_decrypt_key(c, a.blob, a.blob_len, ctx_b, 2, NULL, 10, &wrong, &err);
	assert_int_equal(st, KMS_INVALID_CIPHERTEXT);
	assert_int_equal(stats_of(c).decrypt_calls, 5);

	kms_plaintext_free(&p1);
	kms_plaintext_free(&p2);
	kms_plaintext_free(&p3);
	kms_data_key_free(&a);
	kms_data_key_free(&a2);
	kms_data_key_free(&b);
	kms_data_key_free(&other);
	kms_data_key_free(&via_alias);
	kms_data_key_cache_free(c);
	assert_int_equal(audit_count("generate_data_key", k1).ok, 3);
	assert_int_equal(audit_count("generate_data_key", k2).ok, 1);
	/* 5 Decrypt calls: 2 opened, 3 refused (a refusal names the key it
	 * resolved, or the one required). */
	audit_counts d1 = audit_count("decrypt", k1), d2 = audit_count("decrypt", k2);
	assert_int_equal(d1.ok, 2);
	assert_int_equal(d2.ok, 0);
	assert_int_equal(d1.all + d2.all, 5);
}

/* ---- concurrency ---- */

typedef struct racer {
	pthread_t thread;
	pthread_barrier_t *start;
	kms_data_key_cache *cache;
	const char *key;
	kms_status st;
	kms_error err;
	kms_data_key dk;
} racer;

static void *racer_main(void *arg)
{
	racer *r = arg;
	pthread_barrier_wait(r->start);
	r->st = kms_data_key_cache_encrypt_key(r->cache, r->key, ctx_c, 1, 64, &r->dk, &r->err);
	return NULL;
}

static void race(racer *rs, pthread_barrier_t *start, kms_data_key_cache *c, const char *key)
{
	assert_int_equal(pthread_barrier_init(start, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++) {
		rs[i] = (racer){ .start = start, .cache = c, .key = key };
		assert_int_equal(pthread_create(&rs[i].thread, NULL, racer_main, &rs[i]), 0);
	}
}

static void race_join(racer *rs, pthread_barrier_t *start)
{
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(rs[i].thread, NULL), 0);
	pthread_barrier_destroy(start);
}

/*
 * 16 threads released at once onto one cold entry (max_messages 1000):
 * exactly one GenerateDataKey, whatever the timing. The first to take the
 * cache's lock starts the fetch; every other either finds it in flight and
 * waits for it, or finds its answer: neither makes a call. How many
 * waited and how many found the answer depends on the timing, so only
 * their sum is asserted here (the gate below makes it exact).
 */
static void sixteen_threads_one_call(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1];
	new_key("dkc race", key);
	kms_data_key_cache *c = new_cache(C, HOUR_MS, 1000, UINT64_C(1) << 40, 0);
	racer rs[THREADS];
	pthread_barrier_t start;
	race(rs, &start, c, key);
	race_join(rs, &start);
	for (int i = 0; i < THREADS; i++) {
		CHECK(rs[i].st == KMS_OK, "thread %d: %s", i, rs[i].err.message);
		assert_true(same_key(&rs[i].dk, &rs[0].dk));
	}
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 1);
	assert_int_equal(s.misses, 1);
	assert_int_equal(s.hits + s.coalesced, THREADS - 1);
	print_message("# 16 threads, one cold entry: 1 call, %llu waited for it, %llu found it\n",
	              (unsigned long long)s.coalesced, (unsigned long long)s.hits);
	for (int i = 0; i < THREADS; i++)
		kms_data_key_free(&rs[i].dk);
	kms_data_key_cache_free(c);
	assert_int_equal(audit_count("generate_data_key", key).ok, 1);
}

/*
 * A gate between a client and kmsd: a REP socket the client dials, which
 * forwards each request to kmsd over a REQ socket and holds kmsd's answer
 * until the test releases it. Real requests, a real kmsd, real audit
 * entries; only the moment the answer comes back is the test's.
 */
typedef struct gate {
	nng_socket rep, req;
	char url[700];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned released;  /* answers allowed through so far */
	unsigned forwarded; /* requests sent on to kmsd */
	unsigned answered;  /* answers sent back */
	bool stop;
	char error[200];
} gate;

static void gate_fail(gate *g, const char *what, int rv)
{
	pthread_mutex_lock(&g->mu);
	if (!g->error[0])
		snprintf(g->error, sizeof g->error, "%s: %s", what, nng_strerror(rv));
	pthread_mutex_unlock(&g->mu);
}

static void *gate_main(void *arg)
{
	gate *g = arg;
	uint64_t deadline = mono_ms() + 120000; /* the test's own bound */
	while (mono_ms() < deadline) {
		pthread_mutex_lock(&g->mu);
		bool stop = g->stop;
		pthread_mutex_unlock(&g->mu);
		if (stop)
			break;
		nng_msg *m;
		int rv = nng_recvmsg(g->rep, &m, 0); /* 100 ms receive timeout */
		if (rv == NNG_ETIMEDOUT)
			continue;
		if (rv != 0) {
			gate_fail(g, "gate receive", rv);
			break;
		}
		if ((rv = nng_sendmsg(g->req, m, 0)) != 0) {
			nng_msg_free(m);
			gate_fail(g, "gate send to kmsd", rv);
			break;
		}
		pthread_mutex_lock(&g->mu);
		g->forwarded++;
		pthread_mutex_unlock(&g->mu);
		nng_msg *answer;
		if ((rv = nng_recvmsg(g->req, &answer, 0)) != 0) {
			gate_fail(g, "gate answer from kmsd", rv);
			break;
		}
		pthread_mutex_lock(&g->mu);
		while (g->answered >= g->released && !g->stop && mono_ms() < deadline) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 100 * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&g->cv, &g->mu, &until);
		}
		bool pass = g->answered < g->released;
		if (pass)
			g->answered++;
		pthread_mutex_unlock(&g->mu);
		if (!pass) {
			nng_msg_free(answer);
			break;
		}
		if ((rv = nng_sendmsg(g->rep, answer, 0)) != 0) {
			nng_msg_free(answer);
			gate_fail(g, "gate send to the client", rv);
			break;
		}
	}
	return NULL;
}

static void gate_open(gate *g)
{
	memset(g, 0, sizeof *g);
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	snprintf(g->url, sizeof g->url, "ipc://%s/dkc-gate.sock", H.dir);
	assert_int_equal(nng_rep0_open(&g->rep), 0);
	assert_int_equal(nng_req0_open(&g->req), 0);
	assert_int_equal(nng_socket_set_ms(g->rep, NNG_OPT_RECVTIMEO, 100), 0);
	assert_int_equal(nng_socket_set_ms(g->req, NNG_OPT_RECVTIMEO, CALL_TIMEOUT_MS), 0);
	assert_int_equal(nng_listen(g->rep, g->url, NULL, 0), 0);
	assert_int_equal(nng_dial(g->req, H.ipc_url, NULL, 0), 0);
	assert_int_equal(pthread_create(&g->thread, NULL, gate_main, g), 0);
}

static void gate_release(gate *g, unsigned n)
{
	pthread_mutex_lock(&g->mu);
	g->released += n;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static unsigned gate_forwarded(gate *g)
{
	pthread_mutex_lock(&g->mu);
	unsigned n = g->forwarded;
	pthread_mutex_unlock(&g->mu);
	return n;
}

static void gate_close(gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->stop = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	assert_int_equal(pthread_join(g->thread, NULL), 0);
	CHECK(!g->error[0], "%s", g->error);
	(void)kms_nng_close_bounded(g->rep, TEST_CLOSE_WAIT_MS);
	(void)kms_nng_close_bounded(g->req, TEST_CLOSE_WAIT_MS);
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
}

/* Waits (bounded) until 15 of the 16 are waiting for the one fetch, which
 * the gate has sent on to kmsd and holds; the counts are cumulative, so
 * from what they were before the round (base, base_forwarded). */
static void wait_fifteen_waiting(kms_data_key_cache *c, gate *g,
                                 const kms_data_key_cache_stats *base, unsigned base_forwarded)
{
	uint64_t deadline = mono_ms() + WAIT_MS;
	kms_data_key_cache_stats s = stats_of(c);
	for (int i = 0; i < WAIT_MS; i++) {
		if (s.coalesced - base->coalesced >= THREADS - 1 &&
		    gate_forwarded(g) - base_forwarded >= 1)
			break;
		if (mono_ms() > deadline)
			break;
		sleep_ms(1);
		s = stats_of(c);
	}
	unsigned forwarded = gate_forwarded(g) - base_forwarded;
	unsigned long long waiting = s.coalesced - base->coalesced,
	                   fetching = s.misses - base->misses;
	CHECK(waiting == THREADS - 1 && fetching == 1 && forwarded == 1,
	      "%llu waiting, %llu fetching, %u forwarded; want 15, 1, 1", waiting, fetching,
	      forwarded);
}

/*
 * The same 16 threads with kmsd's answer held at a gate until the other 15
 * are seen waiting for it: exactly 15 coalesced, one call, one key for all.
 * Then a key that is disabled: all 16 fail alike (one call, its status and
 * message for everyone) and nothing is cached: once the key is enabled,
 * the next message makes a call and succeeds.
 */
static void sixteen_threads_behind_a_gate(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1], off[KMS_KEY_ID_MAX + 1];
	new_key("dkc gate", key);
	new_key("dkc gate disabled", off);
	gate g;
	gate_open(&g);
	kms_client *gc = open_client(g.url, GATE_CALL_TIMEOUT_MS);
	kms_data_key_cache *c = new_cache(gc, HOUR_MS, 1000, UINT64_C(1) << 40, 0);
	racer rs[THREADS];
	pthread_barrier_t start;

	kms_data_key_cache_stats base = stats_of(c);
	race(rs, &start, c, key);
	wait_fifteen_waiting(c, &g, &base, 0);
	gate_release(&g, 1);
	race_join(rs, &start);
	for (int i = 0; i < THREADS; i++) {
		CHECK(rs[i].st == KMS_OK, "thread %d: %s", i, rs[i].err.message);
		assert_true(same_key(&rs[i].dk, &rs[0].dk));
	}
	for (int i = 0; i < THREADS; i++)
		kms_data_key_free(&rs[i].dk);
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 1);
	assert_int_equal(s.coalesced, THREADS - 1);
	assert_int_equal(s.hits, 0);

	/* A failed fetch, shared by its waiters. */
	kms_error err;
	kms_status st = kms_disable_key(C, off, &err);
	CHECK(st == KMS_OK, "disable: %s", err.message);
	base = stats_of(c);
	race(rs, &start, c, off);
	wait_fifteen_waiting(c, &g, &base, 1);
	gate_release(&g, 1);
	race_join(rs, &start);
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(rs[i].st, KMS_FAILED_PRECONDITION);
		assert_int_equal(rs[i].err.status, KMS_FAILED_PRECONDITION);
		assert_int_equal(rs[i].err.origin, KMS_ERROR_SERVER);
		assert_true(rs[i].err.message[0] != '\0');
		assert_string_equal(rs[i].err.message, rs[0].err.message);
		assert_null(rs[i].dk.plaintext);
		assert_null(rs[i].dk.blob);
	}
	s = stats_of(c);
	assert_int_equal(s.generate_calls, 2);
	assert_int_equal(s.coalesced, 2 * (THREADS - 1));
	/* Nothing was cached: enabled, the next message calls again. */
	st = kms_enable_key(C, off, &err);
	CHECK(st == KMS_OK, "enable: %s", err.message);
	gate_release(&g, 1);
	encrypt_drop(c, off, ctx_c, 1, 64);
	assert_int_equal(stats_of(c).generate_calls, 3);

	kms_data_key_cache_free(c);
	kms_client_close(gc);
	gate_close(&g);
	audit_counts a = audit_count("generate_data_key", key);
	assert_int_equal(a.all, 1);
	assert_int_equal(a.ok, 1);
	a = audit_count("generate_data_key", off);
	assert_int_equal(a.all, 2);
	assert_int_equal(a.failed_precondition, 1);
	assert_int_equal(a.ok, 1);
}

/* ---- failures ---- */

static void put_policy(const char *key, bool deny_data_keys)
{
	char policy[512];
	snprintf(policy, sizeof policy,
	         "{\"Version\": \"2024-01-01\", \"Statement\": ["
	         "{\"Sid\": \"all\", \"Effect\": \"Allow\", \"Principal\": \"" HARNESS_ADMIN
	         "\", \"Action\": \"*\"}%s]}",
	         deny_data_keys ? ", {\"Sid\": \"no-data-keys\", \"Effect\": \"Deny\", "
	                          "\"Principal\": \"" HARNESS_ADMIN
	                          "\", \"Action\": \"generate_data_key\"}"
	                        : "");
	kms_error err;
	kms_status st = kms_put_key_policy(C, key, policy, &err);
	CHECK(st == KMS_OK, "put key policy: %s", err.message);
}

static void encrypt_fails(kms_data_key_cache *c, const char *key, kms_status want)
{
	kms_data_key dk;
	kms_error err;
	kms_status st = kms_data_key_cache_encrypt_key(c, key, ctx_c, 1, 64, &dk, &err);
	CHECK(st == want, "encrypt_key %s: %s (%s), want %s", key, kms_status_name(st),
	      err.message, kms_status_name(want));
	assert_int_equal(err.status, want);
	assert_true(err.message[0] != '\0');
	assert_null(dk.plaintext);
	assert_null(dk.blob);
}

/*
 * A fetch that fails (the key disabled; a policy's Deny; no such key)
 * fails its message and caches nothing: each message tries again. And what
 * caching gives up, as documented: a key already cached still serves after
 * a Deny, until a bound retires it (max_messages 3 here).
 */
static void failed_fetch_caches_nothing(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1];
	new_key("dkc failures", key);
	kms_data_key_cache *c = new_cache(C, HOUR_MS, 3, UINT64_C(1) << 40, 0);
	kms_error err;
	kms_status st = kms_disable_key(C, key, &err);
	CHECK(st == KMS_OK, "disable: %s", err.message);
	encrypt_fails(c, key, KMS_FAILED_PRECONDITION);
	encrypt_fails(c, key, KMS_FAILED_PRECONDITION);
	assert_int_equal(stats_of(c).generate_calls, 2);
	st = kms_enable_key(C, key, &err);
	CHECK(st == KMS_OK, "enable: %s", err.message);
	encrypt_drop(c, key, ctx_c, 1, 64);     /* call 3: message 1 of 3 */
	encrypt_drop(c, key, ctx_c, 1, 64);     /* hit: 2 of 3 */
	assert_int_equal(stats_of(c).generate_calls, 3);

	put_policy(key, true);
	encrypt_drop(c, key, ctx_c, 1, 64);     /* hit, though denied now: 3 of 3 */
	assert_int_equal(stats_of(c).generate_calls, 3);
	encrypt_fails(c, key, KMS_ACCESS_DENIED); /* call 4 */
	encrypt_fails(c, key, KMS_ACCESS_DENIED); /* call 5: nothing was cached */
	put_policy(key, false);
	encrypt_drop(c, key, ctx_c, 1, 64);     /* call 6 */
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 6);
	assert_int_equal(s.hits, 2);
	assert_int_equal(s.misses, 6);

	/* No such key: refused by kmsd, each time. */
	const char *missing = "k-00000000000000000000000000000000";
	encrypt_fails(c, missing, KMS_NOT_FOUND);
	encrypt_fails(c, missing, KMS_NOT_FOUND);
	assert_int_equal(stats_of(c).generate_calls, 8);
	kms_data_key_cache_free(c);

	audit_counts a = audit_count("generate_data_key", key);
	assert_int_equal(a.all, 6);
	assert_int_equal(a.failed_precondition, 2);
	assert_int_equal(a.access_denied, 2);
	assert_int_equal(a.ok, 2);
}

/* ---- the decrypt side ---- */

/* 50 opens of one blob with max_messages 10: 5 Decrypt calls. */
static void decrypt_side_caching(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1];
	new_key("dkc decrypt", key);
	kms_data_key dk;
	kms_error err;
	kms_status st = kms_generate_data_key(C, key, ctx_a, 2, &dk, &err);
	CHECK(st == KMS_OK, "generate_data_key: %s", err.message);
	kms_data_key_cache *c = new_cache(C, HOUR_MS, 10, UINT64_C(1) << 40, 0);
	for (int i = 0; i < 50; i++) {
		kms_plaintext pt;
		st = kms_data_key_cache_decrypt_key(c, dk.blob, dk.blob_len, ctx_a, 2, NULL, 4096,
		                                    &pt, &err);
		CHECK(st == KMS_OK, "decrypt_key %d: %s", i, err.message);
		assert_int_equal(pt.len, KMS_DATA_KEY_LEN);
		assert_memory_equal(pt.bytes, dk.plaintext, KMS_DATA_KEY_LEN);
		assert_string_equal(pt.key_id, key);
		assert_int_equal(pt.key_version, 1);
		kms_plaintext_free(&pt);
	}
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.decrypt_calls, 5);
	assert_int_equal(s.generate_calls, 0);
	assert_int_equal(s.hits, 45);
	assert_int_equal(s.retired, 5);
	kms_data_key_free(&dk);
	kms_data_key_cache_free(c);
	assert_int_equal(audit_count("decrypt", key).ok, 5);
	assert_int_equal(audit_count("generate_data_key", key).ok, 1);
}

/* ---- capacity ---- */

/* Capacity 2: a third entry evicts the least recently used one. */
static void capacity_evicts_least_recent(void **state)
{
	(void)state;
	char key[KMS_KEY_ID_MAX + 1];
	new_key("dkc capacity", key);
	kms_data_key_cache *c = new_cache(C, HOUR_MS, 1000, UINT64_C(1) << 40, 2);
	const kms_context_pair c1[] = { { "n", "1" } }, c2[] = { { "n", "2" } },
	                       c3[] = { { "n", "3" } };
	encrypt_drop(c, key, c1, 1, 1); /* call 1 */
	encrypt_drop(c, key, c2, 1, 1); /* call 2 */
	encrypt_drop(c, key, c1, 1, 1); /* hit: 2 is now the least recent */
	encrypt_drop(c, key, c3, 1, 1); /* call 3, evicts 2 */
	assert_int_equal(stats_of(c).evicted, 1);
	encrypt_drop(c, key, c1, 1, 1); /* hit: 3 is now the least recent */
	encrypt_drop(c, key, c2, 1, 1); /* call 4, evicts 3 */
	encrypt_drop(c, key, c1, 1, 1); /* hit */
	encrypt_drop(c, key, c3, 1, 1); /* call 5, evicts 2 */
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls, 5);
	assert_int_equal(s.hits, 3);
	assert_int_equal(s.evicted, 3);
	assert_int_equal(s.retired, 0);
	kms_data_key_cache_free(c); /* with two entries in it: wiped, freed */
	assert_int_equal(audit_count("generate_data_key", key).ok, 5);
}

/* ---- arguments ---- */

static void refused(kms_data_key_cache_limits l, const char *names)
{
	kms_data_key_cache *c = (kms_data_key_cache *)&l; /* must be set to NULL */
	kms_error err;
	kms_status st = kms_data_key_cache_new(C, &l, &c, &err);
	assert_int_equal(st, KMS_INVALID_ARGUMENT);
	assert_int_equal(err.status, KMS_INVALID_ARGUMENT);
	assert_int_equal(err.origin, KMS_ERROR_LOCAL);
	assert_null(c);
	CHECK(strstr(err.message, names), "\"%s\" does not name %s", err.message, names);
	assert_null(strchr(err.message, '\n'));
}

static void bad_limits_refused(void **state)
{
	(void)state;
	const kms_data_key_cache_limits ok = { .max_age_ms = 1000, .max_messages = 1,
	                                       .max_bytes = 1 };
	kms_data_key_cache_limits l = ok;
	l.max_age_ms = 0;
	refused(l, "max_age_ms");
	l.max_age_ms = KMS_DATA_KEY_CACHE_MAX_AGE_MS_MAX + 1;
	refused(l, "max_age_ms");
	l = ok;
	l.max_messages = 0;
	refused(l, "max_messages");
	l = ok;
	l.max_bytes = 0;
	refused(l, "max_bytes");
	l = ok;
	l.capacity = KMS_DATA_KEY_CACHE_CAPACITY_MAX + 1;
	refused(l, "capacity");

	kms_data_key_cache *c = NULL;
	kms_error err;
	assert_int_equal(kms_data_key_cache_new(C, NULL, &c, &err), KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_data_key_cache_new(NULL, &ok, &c, &err), KMS_INVALID_ARGUMENT);
	assert_null(c);

	/* The edges are accepted. */
	l = ok;
	l.max_age_ms = KMS_DATA_KEY_CACHE_MAX_AGE_MS_MAX;
	l.capacity = KMS_DATA_KEY_CACHE_CAPACITY_MAX;
	assert_int_equal(kms_data_key_cache_new(C, &l, &c, &err), KMS_OK);

	/* Bad messages are refused before any call. */
	kms_data_key dk;
	const kms_context_pair twice[] = { { "t", "1" }, { "t", "2" } };
	const kms_context_pair no_value[] = { { "t", NULL } };
	assert_int_equal(kms_data_key_cache_encrypt_key(c, "k-x", twice, 2, 1, &dk, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_data_key_cache_encrypt_key(c, "k-x", no_value, 1, 1, &dk, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_data_key_cache_encrypt_key(c, "k-x", NULL, 1, 1, &dk, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_data_key_cache_encrypt_key(c, NULL, NULL, 0, 1, &dk, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_data_key_cache_encrypt_key(NULL, "k-x", NULL, 0, 1, &dk, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_data_key_cache_encrypt_key(c, "k-x", NULL, 0, 1, NULL, &err),
	                 KMS_INVALID_ARGUMENT);
	kms_plaintext pt;
	assert_int_equal(kms_data_key_cache_decrypt_key(c, NULL, 0, NULL, 0, NULL, 1, &pt, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_null(pt.bytes);
	kms_data_key_cache_stats s = stats_of(c);
	assert_int_equal(s.generate_calls + s.decrypt_calls + s.misses + s.hits, 0);
	kms_data_key_cache_free(c);
	kms_data_key_cache_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(max_messages_bounds_the_calls),
		cmocka_unit_test(max_bytes_retires),
		cmocka_unit_test(max_age_retires),
		cmocka_unit_test(entries_by_reference_and_context),
		cmocka_unit_test(sixteen_threads_one_call),
		cmocka_unit_test(sixteen_threads_behind_a_gate),
		cmocka_unit_test(failed_fetch_caches_nothing),
		cmocka_unit_test(decrypt_side_caching),
		cmocka_unit_test(capacity_evicts_least_recent),
		cmocka_unit_test(bad_limits_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
