/*
 * test_crash: crash safety of key creation, rotation and destruction
 * (kms/keys/keyring.h), against a real kmsd on a real SoftHSM token.
 *
 * (a) crash_points: for each KMS_TEST_CRASH_AT point (they are points of an
 *     hsm-resident key's intent protocol; a wrapped key's rows are written
 *     in one commit after the HSM has wrapped it) the daemon dies with
 *     exit code 99 in the middle of the operation without answering; after
 *     a restart nothing half-made is visible, every acknowledged key still
 *     encrypts and decrypts (old blobs too), and with the daemon stopped the
 *     token holds exactly the versions the daemon shows (no orphans).
 * (b) kill9_loop: SIGKILL at a random moment (5..120 ms after the first
 *     request, or after every client's first reply) while two
 *     clients create keys and a third encrypts under one hot key whose
 *     versions last 3 uses (gcm_max_encryptions = 3, reserved one at a
 *     time), at least 20 times; every acknowledged key survives and decrypts
 *     what was encrypted under it, every listed key works, no version sealed
 *     more than 3 blobs or more than it had reserved, and the token never
 *     holds an orphan.
 *
 * KMS_TEST_SEED=N replays (b)'s random delays.
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
#include <sys/random.h>
#include <time.h>

#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define CRASH_EXIT_CODE 99 /* KEYRING_CRASH_EXIT_CODE */
#define EXIT_WAIT_MS 15000
#define DESTROY_WAIT_MS 60000 /* 7 "days" of 1 s and ticks of 1 s, on a slow machine */
#define DELETION_WINDOW_DAYS 7
#define PLAINTEXT_LEN 32
#define BLOBS_MAX 4096

#define KILL9_ITERATIONS 24
#define KILL9_MIN_ITERATIONS 20 /* KMS_TEST_KILL9_MIN lowers it (the sanitizer lane) */
#define KILL9_BUDGET_MS 80000      /* no optional iteration starts after this */
#define KILL9_DELAY_MIN_MS 5
#define KILL9_DELAY_MAX_MS 120
#define KILL9_CREATORS 2          /* clients creating keys */
#define KILL9_CLIENTS (KILL9_CREATORS + 1) /* and one encrypting under a hot key */
#define KILL9_GCM_MAX 3            /* uses per version in the loop: it rotates often */
#define KILL9_REQUESTS_MAX 400     /* per client per iteration */
#define KILL9_TOKEN_CHECK_EVERY 6  /* iterations */
#define KILL9_WARMUP_WAIT_MS 10000 /* at most, for every client's first reply */

/* A day is a second, and the background task looks every second, so a
 * deletion window of 7 days passes in about 8 s. */
static const char *const CRASH_CONFIG = "[limits]\nseconds_per_day = 1\ntick_seconds = 1\n";
/* In the kill -9 loop a version seals at most 3 blobs and every use is
 * reserved on its own, so SIGKILL also lands inside GCM reservations and
 * bound-driven rotations. */
static const char *const KILL9_CONFIG = "[limits]\nseconds_per_day = 1\ntick_seconds = 1\n"
                                        "gcm_max_encryptions = 3\ngcm_reserve_block = 1\n";

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

/* What the test was told: keys acknowledged, and blobs with their
 * plaintexts. */
typedef struct acked_blob {
	char key_id[E2E_KEY_ID_SIZE];
	uint8_t plaintext[PLAINTEXT_LEN];
	uint8_t *blob;
	size_t blob_len;
} acked_blob;

typedef struct ledger {
	pthread_mutex_t lock;
	char (*keys)[E2E_KEY_ID_SIZE];
	bool *destroyed;
	bool *roundtripped;   /* encrypted and decrypted since the ack */
	size_t n_keys;
	acked_blob *blobs;
	size_t n_blobs;
} ledger;

static harness g_h;
static ledger g_ledger = { .lock = PTHREAD_MUTEX_INITIALIZER };
static const char *g_config = NULL; /* CRASH_CONFIG, then KILL9_CONFIG */
/* Keys from this index of the ledger on, and blobs from this index on, were
 * made under KILL9_GCM_MAX (SIZE_MAX: not yet). */
static size_t g_bounded_keys_from = SIZE_MAX, g_bounded_blobs_from = SIZE_MAX;

static bool ledger_has_key(ledger *l, const char *id)
{
	for (size_t i = 0; i < l->n_keys; i++)
		if (!strcmp(l->keys[i], id))
			return true;
	return false;
}

/* Thread-safe. */
static bool ledger_add_key(ledger *l, const char *id)
{
	pthread_mutex_lock(&l->lock);
	bool ok = l->n_keys < E2E_KEYS_MAX && !ledger_has_key(l, id);
	if (ok) {
		snprintf(l->keys[l->n_keys], E2E_KEY_ID_SIZE, "%s", id);
		l->destroyed[l->n_keys] = false;
		l->roundtripped[l->n_keys++] = false;
	}
	pthread_mutex_unlock(&l->lock);
	return ok;
}

/* Thread-safe. */
static bool ledger_add_blob(ledger *l, const char *key_id, const uint8_t plaintext[PLAINTEXT_LEN],
                            const uint8_t *blob, size_t blob_len)
{
	uint8_t *copy = malloc(blob_len);
	if (!copy)
		return false;
	memcpy(copy, blob, blob_len);
	pthread_mutex_lock(&l->lock);
	bool ok = l->n_blobs < BLOBS_MAX;
	if (ok) {
		acked_blob *b = &l->blobs[l->n_blobs++];
		snprintf(b->key_id, sizeof b->key_id, "%s", key_id);
		memcpy(b->plaintext, plaintext, PLAINTEXT_LEN);
		b->blob = copy;
		b->blob_len = blob_len;
	}
	pthread_mutex_unlock(&l->lock);
	if (!ok)
		free(copy);
	return ok;
}

static void ledger_mark_destroyed(ledger *l, const char *id)
{
	for (size_t i = 0; i < l->n_keys; i++)
		if (!strcmp(l->keys[i], id))
			l->destroyed[i] = true;
}

/* The ledger index of id, or SIZE_MAX. */
static size_t ledger_index(const ledger *l, const char *id)
{
	for (size_t i = 0; i < l->n_keys; i++)
		if (!strcmp(l->keys[i], id))
			return i;
	return SIZE_MAX;
}

static bool ledger_destroyed(const ledger *l, const char *id)
{
	for (size_t i = 0; i < l->n_keys; i++)
		if (!strcmp(l->keys[i], id))
			return l->destroyed[i];
	return false;
}

static int setup(void **state)
{
	(void)state;
	g_ledger.keys = calloc(E2E_KEYS_MAX, sizeof *g_ledger.keys);
	g_ledger.destroyed = calloc(E2E_KEYS_MAX, sizeof *g_ledger.destroyed);
	g_ledger.roundtripped = calloc(E2E_KEYS_MAX, sizeof *g_ledger.roundtripped);
	g_ledger.blobs = calloc(BLOBS_MAX, sizeof *g_ledger.blobs);
	return g_ledger.keys && g_ledger.destroyed && g_ledger.roundtripped && g_ledger.blobs
	               ? 0
	               : -1;
}

static int teardown(void **state)
{
	(void)state;
	harness_kill9(&g_h);
	for (size_t i = 0; i < g_ledger.n_blobs; i++)
		free(g_ledger.blobs[i].blob);
	free(g_ledger.blobs);
	free(g_ledger.keys);
	free(g_ledger.destroyed);
	free(g_ledger.roundtripped);
	return 0;
}

/* ---- steps ---- */

static void start(const char *crash_at)
{
	harness_options o = { .extra_config = g_config ? g_config : CRASH_CONFIG,
		              .crash_at = crash_at };
	CHECK(harness_start(&g_h, &o), "kmsd did not start (crash_at %s); see %s",
	      crash_at ? crash_at : "none", g_h.log);
}

static void stop(void)
{
	int code = harness_stop(&g_h);
	CHECK(code == 0, "kmsd exited with %d on SIGTERM; see %s", code, g_h.log);
}

static void create_acked_key(char id[E2E_KEY_ID_SIZE], Kms__KeyProtection protection)
{
	Kms__Response *r = e2e_create_key_as(&g_h, protection);
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_CREATE_KEY,
	      "CreateKey: %s", r ? r->message : "no reply");
	snprintf(id, E2E_KEY_ID_SIZE, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
	CHECK(ledger_add_key(&g_ledger, id), "key %s acknowledged twice", id);
}

/* Encrypts fresh random bytes under key_id and records the blob. */
static void encrypt_and_record(const char *key_id, uint32_t expect_version)
{
	uint8_t plaintext[PLAINTEXT_LEN];
	assert_int_equal(getrandom(plaintext, sizeof plaintext, 0), sizeof plaintext);
	Kms__Response *r = e2e_encrypt(&g_h, key_id, plaintext, sizeof plaintext);
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ENCRYPT,
	      "Encrypt under %s: %s", key_id, r ? r->message : "no reply");
	if (expect_version)
		CHECK(r->encrypt->key_version == expect_version, "Encrypt under %s used v%u, not v%u",
		      key_id, r->encrypt->key_version, expect_version);
	CHECK(ledger_add_blob(&g_ledger, key_id, plaintext, r->encrypt->ciphertext_blob.data,
	                      r->encrypt->ciphertext_blob.len),
	      "too many blobs for the test");
	kms__response__free_unpacked(r, NULL);
}

/* Sends one request that must kill the daemon with the crash hook: no reply,
 * exit code 99. */
static void expect_crash(Kms__Response *reply, const char *point, size_t log_from)
{
	bool replied = reply != NULL;
	int status = reply ? (int)reply->status : -1;
	if (reply)
		kms__response__free_unpacked(reply, NULL);
	int code;
	CHECK(e2e_wait_exit(&g_h, EXIT_WAIT_MS, &code), "kmsd did not exit at %s within %d ms",
	      point, EXIT_WAIT_MS);
	CHECK(!replied, "kmsd answered (status %d) although it crashed at %s", status, point);
	CHECK(code == CRASH_EXIT_CODE, "kmsd exited with %d at %s, not %d", code, point,
	      CRASH_EXIT_CODE);
	char needle[96];
	snprintf(needle, sizeof needle, "KMS_TEST_CRASH_AT=%s", point);
	CHECK(e2e_log_contains_since(&g_h, log_from, needle), "the log does not say \"%s\"",
	      needle);
}

static bool bounded_key(const char *id)
{
	if (g_bounded_keys_from == SIZE_MAX)
		return false;
	for (size_t i = 0; i < g_bounded_keys_from && i < g_ledger.n_keys; i++)
		if (!strcmp(g_ledger.keys[i], id))
			return false;
	return true; /* acknowledged in the loop, or created there and reply lost */
}

/* Under KILL9_GCM_MAX: no version of a key made in the loop has more uses
 * reserved than the bound, and no version sealed more recorded blobs than
 * it had reserved. A reservation lost in a crash and handed out again would
 * break the second. */
static void check_gcm_bound(const e2e_key *keys, size_t n)
{
	if (g_bounded_blobs_from == SIZE_MAX)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!bounded_key(keys[i].id))
			continue;
		for (size_t j = 0; j < keys[i].n_versions; j++)
			CHECK(keys[i].encryptions[j] <= KILL9_GCM_MAX,
			      "%s:v%u has %llu GCM uses reserved, the bound is %d", keys[i].id,
			      keys[i].versions[j], (unsigned long long)keys[i].encryptions[j],
			      KILL9_GCM_MAX);
	}
	for (size_t i = g_bounded_blobs_from; i < g_ledger.n_blobs; i++) {
		const acked_blob *b = &g_ledger.blobs[i];
		e2e_blob_header hdr, other;
		CHECK(e2e_blob_parse(b->blob, b->blob_len, &hdr), "a blob under %s does not parse",
		      b->key_id);
		size_t uses = 0;
		for (size_t j = g_bounded_blobs_from; j < g_ledger.n_blobs; j++)
			uses += e2e_blob_parse(g_ledger.blobs[j].blob, g_ledger.blobs[j].blob_len,
			                       &other) &&
			        !memcmp(other.key_id, hdr.key_id, sizeof hdr.key_id) &&
			        other.key_version == hdr.key_version;
		const e2e_key *k = e2e_find_key(keys, n, b->key_id);
		uint64_t reserved = 0;
		for (size_t j = 0; k && j < k->n_versions; j++)
			if (k->versions[j] == hdr.key_version)
				reserved = k->encryptions[j];
		CHECK(uses <= KILL9_GCM_MAX && uses <= reserved,
		      "%s:v%u sealed %zu recorded blobs with %llu uses reserved (bound %d)",
		      b->key_id, hdr.key_version, uses, (unsigned long long)reserved, KILL9_GCM_MAX);
	}
}

/* With the daemon up: ListKeys shows exactly the acknowledged keys, every
 * recorded blob decrypts to its plaintext (or, for a destroyed key, fails
 * with FAILED_PRECONDITION), every live listed key encrypts and decrypts
 * (with new_only, only keys that have not done so since their ack: the
 * kill -9 loop would otherwise spend its time on old keys). Returns the
 * listing (free()). unacked_ok: listed keys not in the ledger are allowed
 * (kill -9: the reply was lost), and counted in *unacked. */
static e2e_key *verify_keys(bool unacked_ok, bool new_only, size_t *n_listed, size_t *unacked)
{
	e2e_key *keys = NULL;
	size_t n = 0, extra = 0;
	char why[512];
	CHECK(e2e_list_keys(&g_h, &keys, &n), "ListKeys failed");
	for (size_t i = 0; i < g_ledger.n_keys; i++) {
		const e2e_key *k = e2e_find_key(keys, n, g_ledger.keys[i]);
		CHECK(k, "acknowledged key %s is not listed", g_ledger.keys[i]);
		if (g_ledger.destroyed[i])
			CHECK(k->state == KMS__KEY_STATE__DESTROYED, "key %s is state %d, not DESTROYED",
			      k->id, k->state);
		else
			CHECK(k->state == KMS__KEY_STATE__ENABLED, "key %s is state %d, not ENABLED",
			      k->id, k->state);
	}
	for (size_t i = 0; i < n; i++) {
		if (!ledger_has_key(&g_ledger, keys[i].id)) {
			CHECK(unacked_ok, "key %s is listed but was never acknowledged", keys[i].id);
			extra++;
		}
		if (keys[i].state == KMS__KEY_STATE__DESTROYED)
			continue;
		CHECK(keys[i].n_versions >= 1 && keys[i].primary ==
		                                         keys[i].versions[keys[i].n_versions - 1],
		      "key %s: primary v%u is not its newest of %zu versions", keys[i].id,
		      keys[i].primary, keys[i].n_versions);
		size_t at = ledger_index(&g_ledger, keys[i].id);
		if (new_only && at != SIZE_MAX && g_ledger.roundtripped[at])
			continue;
		CHECK(e2e_roundtrip(&g_h, keys[i].id, why, sizeof why), "%s", why);
		if (at != SIZE_MAX)
			g_ledger.roundtripped[at] = true;
	}
	for (size_t i = 0; i < g_ledger.n_blobs; i++) {
		const acked_blob *b = &g_ledger.blobs[i];
		Kms__Response *r = e2e_decrypt(&g_h, b->blob, b->blob_len);
		CHECK(r, "Decrypt of a blob under %s: no reply", b->key_id);
		if (ledger_destroyed(&g_ledger, b->key_id)) {
			CHECK(r->status == KMS__STATUS__FAILED_PRECONDITION,
			      "Decrypt under destroyed key %s: status %d (%s), not FAILED_PRECONDITION",
			      b->key_id, r->status, r->message);
		} else {
			CHECK(r->status == KMS__STATUS__OK &&
			              r->result_case == KMS__RESPONSE__RESULT_DECRYPT,
			      "Decrypt of a blob under %s: %s", b->key_id, r->message);
			CHECK(r->decrypt->plaintext.len == PLAINTEXT_LEN &&
			              !memcmp(r->decrypt->plaintext.data, b->plaintext, PLAINTEXT_LEN),
			      "Decrypt of a blob under %s returned other bytes", b->key_id);
			CHECK(!strcmp(r->decrypt->key_id, b->key_id), "Decrypt says key %s, not %s",
			      r->decrypt->key_id, b->key_id);
		}
		kms__response__free_unpacked(r, NULL);
	}
	check_gcm_bound(keys, n);
	*n_listed = n;
	if (unacked)
		*unacked = extra;
	return keys;
}

static e2e_key *verify_daemon(bool unacked_ok, size_t *n_listed, size_t *unacked)
{
	return verify_keys(unacked_ok, false, n_listed, unacked);
}

/* A listing taken now: verification encrypts, and under a small GCM bound
 * that rotates keys, so an older listing may lack versions. free(). */
static e2e_key *list_now(size_t *n)
{
	e2e_key *keys = NULL;
	CHECK(e2e_list_keys(&g_h, &keys, n), "ListKeys failed");
	return keys;
}

/* Lists, stops the daemon and checks the token against that listing. */
static void stop_and_check_token(void)
{
	char why[512];
	size_t n;
	e2e_key *keys = list_now(&n);
	stop();
	bool ok = e2e_token_matches(keys, n, NULL, why, sizeof why);
	free(keys);
	CHECK(ok, "token after a clean stop: %s", why);
}

/* Restarts without the hook and checks everything. */
static void restart_and_verify(void)
{
	size_t n;
	start(NULL);
	free(verify_daemon(false, &n, NULL));
	stop_and_check_token();
}

/* The token right after the crash, before any reconciliation. */
static size_t count_token_versions(void)
{
	char why[512];
	size_t objects = 0;
	(void)e2e_token_matches(NULL, 0, &objects, why, sizeof why);
	return objects;
}

static uint32_t describe_primary(const char *key_id, size_t *n_versions)
{
	Kms__Response *r = e2e_describe(&g_h, key_id);
	CHECK(r && r->status == KMS__STATUS__OK &&
	              r->result_case == KMS__RESPONSE__RESULT_DESCRIBE_KEY,
	      "DescribeKey %s: %s", key_id, r ? r->message : "no reply");
	uint32_t primary = r->describe_key->key_metadata->primary_version;
	*n_versions = r->describe_key->key_metadata->n_versions;
	kms__response__free_unpacked(r, NULL);
	return primary;
}

static void rotate_ok(const char *key_id, uint32_t expect_primary)
{
	Kms__Response *r = e2e_rotate(&g_h, key_id);
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ROTATE_KEY,
	      "RotateKey %s: %s", key_id, r ? r->message : "no reply");
	CHECK(r->rotate_key->key_metadata->primary_version == expect_primary,
	      "RotateKey %s: primary v%u, not v%u", key_id,
	      r->rotate_key->key_metadata->primary_version, expect_primary);
	kms__response__free_unpacked(r, NULL);
}

/* ---- (a) the crash points ---- */

static void crash_in_create(const char *point, bool hsm_object_made)
{
	start(NULL);
	size_t n;
	free(verify_daemon(false, &n, NULL));
	e2e_key *before = list_now(&n);
	stop();
	size_t objects_before = count_token_versions();

	size_t log_from = e2e_log_size(&g_h);
	start(point);
	expect_crash(e2e_create_key_as(&g_h, KMS__KEY_PROTECTION__HSM_RESIDENT), point, log_from);

	/* Before any reconciliation: the HSM object exists only after-hsm. */
	size_t objects_after = count_token_versions();
	CHECK(objects_after == objects_before + (hsm_object_made ? 1 : 0),
	      "%s: %zu key-version objects on the token after the crash, %zu before", point,
	      objects_after, objects_before);
	if (hsm_object_made) {
		char why[512];
		CHECK(!e2e_token_matches(before, n, NULL, why, sizeof why) && strstr(why, "orphan"),
		      "%s: the crash left no orphan for reconciliation to clean up", point);
	}
	free(before);

	log_from = e2e_log_size(&g_h);
	restart_and_verify();
	CHECK(e2e_log_contains_since(&g_h, log_from, "reconcile"),
	      "%s: no \"reconcile\" line in the log after the restart", point);
}

static void crash_in_rotate(const char *point, const char *key_id, bool hsm_object_made)
{
	size_t n_versions;
	start(NULL);
	uint32_t primary = describe_primary(key_id, &n_versions);
	stop();
	size_t objects_before = count_token_versions();

	size_t log_from = e2e_log_size(&g_h);
	start(point);
	expect_crash(e2e_rotate(&g_h, key_id), point, log_from);
	size_t objects_after = count_token_versions();
	CHECK(objects_after == objects_before + (hsm_object_made ? 1 : 0),
	      "%s: %zu key-version objects on the token after the crash, %zu before", point,
	      objects_after, objects_before);

	/* The half-made version is gone: same primary, same versions, and the
	 * key rotates normally afterwards. */
	start(NULL);
	size_t n_after;
	CHECK(describe_primary(key_id, &n_after) == primary && n_after == n_versions,
	      "%s: key %s changed (primary v%u, %zu versions) by a rotation never acknowledged",
	      point, key_id, primary, n_versions);
	encrypt_and_record(key_id, primary);
	stop();
	restart_and_verify();

	start(NULL);
	rotate_ok(key_id, primary + 1);
	encrypt_and_record(key_id, primary + 1);
	stop();
	restart_and_verify();
}

static void test_crash_points(void **state)
{
	(void)state;
	uint64_t t0 = e2e_now_ms();
	char key_a[E2E_KEY_ID_SIZE], key_b[E2E_KEY_ID_SIZE], key_c[E2E_KEY_ID_SIZE];

	/* Two acknowledged keys with blobs, one rotated once. */
	start(NULL);
	create_acked_key(key_a, KMS__KEY_PROTECTION__WRAPPED);
	create_acked_key(key_b, KMS__KEY_PROTECTION__HSM_RESIDENT);
	encrypt_and_record(key_a, 1);
	encrypt_and_record(key_b, 1);
	rotate_ok(key_b, 2);
	encrypt_and_record(key_b, 2);
	stop();

	crash_in_create("create:after-intent", false);
	crash_in_create("create:after-hsm", true);
	crash_in_rotate("rotate:after-intent", key_b, false);
	crash_in_rotate("rotate:after-hsm", key_b, true);

	/* destroy:after-hsm: the background task destroys C when its window
	 * passes, and dies between the HSM and the tombstone. */
	size_t log_from = e2e_log_size(&g_h);
	start("destroy:after-hsm");
	create_acked_key(key_c, KMS__KEY_PROTECTION__HSM_RESIDENT);
	encrypt_and_record(key_c, 1);
	Kms__Response *r = e2e_schedule_deletion(&g_h, key_c, DELETION_WINDOW_DAYS);
	CHECK(r && r->status == KMS__STATUS__OK, "ScheduleKeyDeletion %s: %s", key_c,
	      r ? r->message : "no reply");
	kms__response__free_unpacked(r, NULL);
	int code;
	CHECK(e2e_wait_exit(&g_h, DESTROY_WAIT_MS, &code),
	      "destroy:after-hsm: kmsd did not exit within %d ms", DESTROY_WAIT_MS);
	CHECK(code == CRASH_EXIT_CODE, "destroy:after-hsm: kmsd exited with %d, not %d", code,
	      CRASH_EXIT_CODE);
	CHECK(e2e_log_contains_since(&g_h, log_from, "KMS_TEST_CRASH_AT=destroy:after-hsm"),
	      "destroy:after-hsm: the log does not name the crash point");

	/* After the restart the destruction is finished: C is a DESTROYED
	 * tombstone, its blob fails with FAILED_PRECONDITION, its objects are
	 * gone, A and B are untouched. */
	ledger_mark_destroyed(&g_ledger, key_c);
	start(NULL);
	size_t n_versions;
	(void)describe_primary(key_c, &n_versions);
	size_t n;
	free(verify_daemon(false, &n, NULL));
	stop_and_check_token();
	print_message("crash points: %llu ms\n", (unsigned long long)(e2e_now_ms() - t0));
}

/* ---- (b) kill -9 at random moments ---- */

typedef struct client {
	pthread_t thread;
	int index;
	const char *hot_key;     /* set: encrypt under it in a loop, create nothing */
	unsigned sealed;
	unsigned iteration;
	nng_socket socket;
	atomic_bool *killed;
	atomic_int *warm;        /* clients that had their first reply (or gave up) */
	bool counted_warm;
	unsigned acked, created_requests, failures;
	char failure[256];
} client;

static void mark_warm(client *c)
{
	if (!c->counted_warm) {
		c->counted_warm = true;
		atomic_fetch_add(c->warm, 1);
	}
}

/* Encrypts under the hot key until the daemon dies; records every blob. */
static void hot_client(client *c)
{
	for (unsigned i = 0; i < KILL9_REQUESTS_MAX && !atomic_load(c->killed); i++) {
		char rid[64];
		uint8_t plaintext[PLAINTEXT_LEN];
		if (getrandom(plaintext, sizeof plaintext, 0) != (ssize_t)sizeof plaintext)
			break;
		snprintf(rid, sizeof rid, "k9h-%u-%u", c->iteration, i);
		Kms__Response *r = e2e_encrypt_on(c->socket, rid, c->hot_key, plaintext,
		                                  sizeof plaintext);
		if (!r)
			break;
		mark_warm(c);
		if (r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ENCRYPT) {
			if (ledger_add_blob(&g_ledger, c->hot_key, plaintext,
			                    r->encrypt->ciphertext_blob.data,
			                    r->encrypt->ciphertext_blob.len))
				c->sealed++;
			else if (!c->failures++)
				snprintf(c->failure, sizeof c->failure, "too many blobs for the test");
		} else if (!c->failures++) {
			snprintf(c->failure, sizeof c->failure, "Encrypt under %s: status %d: %s",
			         c->hot_key, r->status, r->message);
		}
		kms__response__free_unpacked(r, NULL);
	}
}

static void create_client(client *c)
{
	for (unsigned i = 0; i < KILL9_REQUESTS_MAX && !atomic_load(c->killed); i++) {
		char rid[64];
		snprintf(rid, sizeof rid, "k9-%u-%d-%u", c->iteration, c->index, i);
		c->created_requests++;
		Kms__Response *r = e2e_create_key_on(c->socket, rid);
		if (!r)
			break; /* the daemon died under us: the reply is lost */
		mark_warm(c);
		if (r->status != KMS__STATUS__OK || r->result_case != KMS__RESPONSE__RESULT_CREATE_KEY) {
			if (!c->failures++)
				snprintf(c->failure, sizeof c->failure, "CreateKey: status %d: %s",
				         r->status, r->message);
			kms__response__free_unpacked(r, NULL);
			continue;
		}
		char key_id[E2E_KEY_ID_SIZE];
		snprintf(key_id, sizeof key_id, "%s", r->create_key->key_metadata->key_id);
		kms__response__free_unpacked(r, NULL);
		if (!ledger_add_key(&g_ledger, key_id)) {
			if (!c->failures++)
				snprintf(c->failure, sizeof c->failure, "key %s acknowledged twice", key_id);
			continue;
		}
		c->acked++;

		/* Encrypt right after the ack, while the daemon may still be up. */
		uint8_t plaintext[PLAINTEXT_LEN];
		if (getrandom(plaintext, sizeof plaintext, 0) != (ssize_t)sizeof plaintext)
			break;
		snprintf(rid, sizeof rid, "k9e-%u-%d-%u", c->iteration, c->index, i);
		r = e2e_encrypt_on(c->socket, rid, key_id, plaintext, sizeof plaintext);
		if (!r)
			break;
		if (r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ENCRYPT) {
			if (!ledger_add_blob(&g_ledger, key_id, plaintext, r->encrypt->ciphertext_blob.data,
			                     r->encrypt->ciphertext_blob.len) &&
			    !c->failures++)
				snprintf(c->failure, sizeof c->failure, "too many blobs for the test");
		} else if (!c->failures++) {
			snprintf(c->failure, sizeof c->failure, "Encrypt under %s: status %d: %s",
			         key_id, r->status, r->message);
		}
		kms__response__free_unpacked(r, NULL);
	}
}

static void *client_main(void *arg)
{
	client *c = arg;
	if (c->hot_key)
		hot_client(c);
	else
		create_client(c);
	mark_warm(c); /* never keep the killer waiting for a client that stopped */
	return NULL;
}

static unsigned next_random(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)(*s >> 33);
}

static void test_kill9_loop(void **state)
{
	(void)state;
	uint64_t seed;
	const char *env_seed = getenv("KMS_TEST_SEED");
	if (env_seed)
		seed = strtoull(env_seed, NULL, 10);
	else
		assert_int_equal(getrandom(&seed, sizeof seed, 0), sizeof seed);
	print_message("kill -9 loop: KMS_TEST_SEED=%llu\n", (unsigned long long)seed);
	uint64_t rng = seed;
	uint64_t t0 = e2e_now_ms();
	unsigned iterations = 0, total_acked = 0, total_unacked_present = 0, lost_replies = 0;

	/* Whatever (a) left is acknowledged too; the ledger already has it.
	 * From here on the GCM bound is tiny. */
	g_config = KILL9_CONFIG;
	start(NULL);
	g_bounded_keys_from = g_ledger.n_keys;
	g_bounded_blobs_from = g_ledger.n_blobs;
	char hot_key[E2E_KEY_ID_SIZE];
	create_acked_key(hot_key, KMS__KEY_PROTECTION__WRAPPED);
	unsigned total_sealed = 0;
	/* KMS_TEST_KILL9_MIN=N: exactly N iterations (1..20), none optional. */
	unsigned min_iterations = KILL9_MIN_ITERATIONS, max_iterations = KILL9_ITERATIONS;
	const char *env_min = getenv("KMS_TEST_KILL9_MIN");
	if (env_min && atoi(env_min) >= 1 && atoi(env_min) <= KILL9_MIN_ITERATIONS)
		min_iterations = max_iterations = (unsigned)atoi(env_min);
	for (unsigned it = 0; it < max_iterations; it++) {
		/* The budget only cuts the iterations past the minimum: a
		 * sanitized daemon on a loaded machine (about 4 s an iteration)
		 * still gets every required kill, later. */
		if (it >= min_iterations && e2e_now_ms() - t0 > KILL9_BUDGET_MS)
			break;
		atomic_bool killed = false;
		atomic_int warm = 0;
		client clients[KILL9_CLIENTS];
		memset(clients, 0, sizeof clients);
		for (int i = 0; i < KILL9_CLIENTS; i++) {
			clients[i].index = i;
			clients[i].iteration = it;
			clients[i].killed = &killed;
			clients[i].warm = &warm;
			clients[i].hot_key = i == KILL9_CREATORS ? hot_key : NULL;
			CHECK(e2e_socket(&g_h, 500, 10000, &clients[i].socket),
			      "iteration %u: cannot dial %s", it, g_h.ipc_url);
		}
		unsigned delay = KILL9_DELAY_MIN_MS +
		                 next_random(&rng) % (KILL9_DELAY_MAX_MS - KILL9_DELAY_MIN_MS + 1);
		for (int i = 0; i < KILL9_CLIENTS; i++)
			CHECK(pthread_create(&clients[i].thread, NULL, client_main, &clients[i]) == 0,
			      "pthread_create");
		/* Odd iterations count the delay from when every client had its
		 * first reply, so some requests are acknowledged even when a
		 * slow (sanitized) daemon takes longer than the delay per
		 * request; even ones from the first request, so the kill also
		 * lands in a worker's first request. */
		if (it % 2 == 1) {
			uint64_t until = e2e_now_ms() + KILL9_WARMUP_WAIT_MS;
			while (atomic_load(&warm) < KILL9_CLIENTS && e2e_now_ms() < until)
				e2e_sleep_ms(1);
		}
		e2e_sleep_ms((int)delay);
		atomic_store(&killed, true);
		harness_kill9(&g_h);
		for (int i = 0; i < KILL9_CLIENTS; i++) {
			pthread_join(clients[i].thread, NULL);
			(void)kms_nng_close_bounded(clients[i].socket, TEST_CLOSE_WAIT_MS);
		}
		unsigned acked = 0, requests = 0;
		for (int i = 0; i < KILL9_CLIENTS; i++) {
			CHECK(clients[i].failures == 0, "iteration %u, client %d: %u failures, first: %s",
			      it, i, clients[i].failures, clients[i].failure);
			acked += clients[i].acked;
			total_sealed += clients[i].sealed;
			requests += clients[i].created_requests;
		}
		total_acked += acked;
		lost_replies += requests - acked;

		/* Restart: reconciliation runs, then everything is checked. */
		start(NULL);
		size_t n, unacked;
		e2e_key *keys = verify_keys(true, true, &n, &unacked);
		total_unacked_present += (unsigned)unacked;
		/* Keys whose reply was lost but that exist (and work) are
		 * acknowledged from now on, so each is counted once. */
		for (size_t i = 0; i < n; i++)
			if (!ledger_has_key(&g_ledger, keys[i].id))
				CHECK(ledger_add_key(&g_ledger, keys[i].id), "ledger full");
		free(keys);
		iterations++;
		if (iterations % KILL9_TOKEN_CHECK_EVERY == 0) {
			stop_and_check_token();
			start(NULL);
		}
	}
	size_t n;
	e2e_key *keys = verify_daemon(false, &n, NULL);
	const e2e_key *hot = e2e_find_key(keys, n, hot_key);
	CHECK(hot, "the hot key %s is not listed", hot_key);
	print_message("kill -9 loop: %u iterations, %u keys acknowledged, %u CreateKey replies "
	              "lost, %u of those keys exist and work; %u blobs under the hot key over "
	              "%u versions; %llu ms\n",
	              iterations, total_acked, lost_replies, total_unacked_present, total_sealed,
	              hot->primary, (unsigned long long)(e2e_now_ms() - t0));
	CHECK(total_sealed > 2 * KILL9_GCM_MAX && hot->primary > 2,
	      "the hot key sealed only %u blobs over %u versions: the bound was never crossed",
	      total_sealed, hot->primary);
	free(keys);
	stop_and_check_token();
	CHECK(iterations >= min_iterations, "only %u kill -9 iterations in %d ms", iterations,
	      KILL9_BUDGET_MS);
	CHECK(total_acked > 0, "no CreateKey was acknowledged in any iteration");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_points),
		cmocka_unit_test(test_kill9_loop),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
