/*
 * test_kek_rotation: rotating kmsd's key-encryption key (KEK) over the
 * protocol, and the re-wrap job that follows (docs/key-hierarchy.md,
 * kms/keys/keyring.h), against a real kmsd on a real SoftHSM token.
 *
 * 20 wrapped keys of 27 versions each (540 versions: the job's pages hold
 * 256, so every re-wrap spans three pages), and blobs sealed under every
 * fourth version. Then, in order, each step leaving the next a KEK to
 * rotate:
 *
 *  1. under_traffic: RotateKek (KEK 2 current, state and HSM id as
 *     returned) while two client threads encrypt, decrypt what they sealed
 *     and decrypt blobs from before (bounded: at most 300 rounds each). The
 *     test polls ListKeks (bounded) until KEK 1 is RETIRED and KEK 2 wraps
 *     all 540 versions; at every poll the two counts add up to 540 (a
 *     version is under one KEK or the other, never lost). Every blob from
 *     before, during and after decrypts; kms-kek-00000001 is gone from the
 *     token (looked up through the hsm layer), kms-kek-00000002 is there.
 *  2. crash rewrap:after-hsm: kmsd exits 99 with a page re-wrapped in the
 *     HSM and not committed; the store (opened by the test, kmsd down)
 *     still has all 540 under KEK 2. After a restart the job resumes and
 *     finishes; every blob decrypts.
 *  3. crash rewrap:after-commit, then SIGKILL: kmsd exits 99 right after
 *     the first page's commit: the store has 540 - 256 under KEK 3 and 256
 *     under KEK 4. It restarts with one page per tick and an hour between
 *     ticks, so its start-up tick moves exactly one more page: ListKeks
 *     shows 28 / 512, and stays so. A second RotateKek is then refused
 *     FAILED_PRECONDITION naming the draining KEK, blobs decrypt through
 *     both KEKs, and kmsd is killed with SIGKILL in that partial state (the
 *     store still says 28 under the draining KEK); a restart finishes it.
 *  4. crash retire:after-hsm: kmsd exits 99 with the drained KEK's token
 *     object destroyed and its row still DRAINING (0 versions, object gone
 *     from the token); a restart retires it (the destroy is idempotent).
 *     In the end KEKs 1..4 are retired and gone from the token, KEK 5 is
 *     current with all 540 versions, and every blob decrypts.
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

#include "hsm/hsm.h"
#include "kms/store/store.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define N_KEYS 20
#define VERSIONS_PER_KEY 27
#define TOTAL_VERSIONS (N_KEYS * VERSIONS_PER_KEY) /* 540: three pages */
#define PAGE 256              /* KEYRING_REWRAP_BATCH */
#define BLOB_EVERY 4          /* a blob under every fourth version */
#define PLAINTEXT_LEN 32
#define BLOBS_MAX 4096
#define TRAFFIC_THREADS 2
#define TRAFFIC_ROUNDS_MAX 300
#define DRAIN_WAIT_MS 120000  /* a re-wrap of 540 versions, on a slow machine */
#define EXIT_WAIT_MS 60000
#define POLL_MS 20
#define CRASH_EXIT_CODE 99    /* KEYRING_CRASH_EXIT_CODE */
#define KEKS_MAX 64

/* The background task every second: a rotation's re-wrap starts within a
 * second and does up to 16 pages per tick. */
static const char *const FAST = "[limits]\ntick_seconds = 1\n";
/* One page per tick and an hour between ticks: only the tick at start-up
 * runs during the test, and it moves exactly one page. */
static const char *const ONE_PAGE =
        "[limits]\ntick_seconds = 3600\n[keys]\nrewrap_pages_per_tick = 1\n";

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

static harness H;
static char keys[N_KEYS][E2E_KEY_ID_SIZE];

typedef struct sealed {
	uint8_t plaintext[PLAINTEXT_LEN];
	uint8_t *blob;
	size_t len;
} sealed;
static sealed blobs[BLOBS_MAX];
static size_t n_blobs;
static pthread_mutex_t blobs_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- kmsd ---- */

static void start(const char *config, const char *crash_at)
{
	harness_options o = { .extra_config = config, .crash_at = crash_at };
	CHECK(harness_start(&H, &o), "kmsd did not start (crash_at %s); see %s",
	      crash_at ? crash_at : "none", H.log);
}

static void stop(void)
{
	int code = harness_stop(&H);
	CHECK(code == 0, "kmsd exited with %d on SIGTERM; see %s", code, H.log);
}

static void wait_crash(const char *point)
{
	int code = -1;
	CHECK(e2e_wait_exit(&H, EXIT_WAIT_MS, &code), "kmsd did not exit at %s within %d ms",
	      point, EXIT_WAIT_MS);
	CHECK(code == CRASH_EXIT_CODE, "kmsd exited with %d at %s, want %d; see %s", code, point,
	      CRASH_EXIT_CODE, H.log);
}

/* ---- KEKs, as ListKeks shows them ---- */

typedef struct kek_view {
	uint32_t id;
	char hsm_id[40];
	int state; /* Kms__KekState */
	int64_t created_at, retired_at;
	uint64_t versions;
} kek_view;

typedef struct kek_views {
	kek_view k[KEKS_MAX];
	size_t n;
} kek_views;

static void list_keks(kek_views *out)
{
	Kms__ListKeksRequest l = KMS__LIST_KEKS_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_LIST_KEKS;
	req.list_keks = &l;
	Kms__Response *r = harness_call(&H, &req);
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_LIST_KEKS,
	      "ListKeks: %s", r ? r->message : "no reply");
	CHECK(r->list_keks->n_keks <= KEKS_MAX, "ListKeks: %zu KEKs", r->list_keks->n_keks);
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < r->list_keks->n_keks; i++) {
		const Kms__Kek *k = r->list_keks->keks[i];
		kek_view *v = &out->k[out->n++];
		v->id = k->id;
		snprintf(v->hsm_id, sizeof v->hsm_id, "%s", k->hsm_id);
		v->state = (int)k->state;
		v->created_at = k->created_at;
		v->retired_at = k->retired_at;
		v->versions = k->versions;
		CHECK(i == 0 || out->k[i - 1].id < v->id, "ListKeks is not ascending by id");
	}
	kms__response__free_unpacked(r, NULL);
}

static const kek_view *find_kek(const kek_views *v, uint32_t id)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->k[i].id == id)
			return &v->k[i];
	fail_msg("ListKeks shows no KEK %u", id);
	return NULL;
}

static void hsm_name(uint32_t id, char out[40])
{
	snprintf(out, 40, "kms-kek-%08u", id);
}

static Kms__Response *rotate_kek(void)
{
	Kms__RotateKekRequest rk = KMS__ROTATE_KEK_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ROTATE_KEK;
	req.rotate_kek = &rk;
	return harness_call(&H, &req);
}

/* RotateKek must make KEK want_id current. With crash_expected, the reply
 * may be lost to the crash the next tick brings (the store is checked
 * after it instead). */
static void rotate_to(uint32_t want_id, bool crash_expected)
{
	Kms__Response *r = rotate_kek();
	if (!r && crash_expected)
		return;
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ROTATE_KEK,
	      "RotateKek: %s", r ? r->message : "no reply");
	char name[40];
	hsm_name(want_id, name);
	const Kms__Kek *k = r->rotate_kek->kek;
	CHECK(k && k->id == want_id && !strcmp(k->hsm_id, name) &&
	      k->state == KMS__KEK_STATE__KEK_CURRENT && k->versions == 0 && k->created_at > 0 &&
	      k->retired_at == 0,
	      "RotateKek returned KEK %u %s state %d versions %llu, want %u %s CURRENT 0",
	      k ? k->id : 0, k ? k->hsm_id : "-", k ? (int)k->state : -1,
	      k ? (unsigned long long)k->versions : 0ull, want_id, name);
	kms__response__free_unpacked(r, NULL);
}

/* Polls ListKeks (bounded) until KEK from is retired and KEK to wraps every
 * version; at every poll the two together wrap all of them. */
static void wait_drained(uint32_t from, uint32_t to)
{
	uint64_t deadline = e2e_now_ms() + DRAIN_WAIT_MS;
	kek_views v;
	for (;;) {
		list_keks(&v);
		const kek_view *a = find_kek(&v, from), *b = find_kek(&v, to);
		CHECK(a->versions + b->versions == TOTAL_VERSIONS,
		      "KEK %u wraps %llu and KEK %u %llu: together not %d", from,
		      (unsigned long long)a->versions, to, (unsigned long long)b->versions,
		      TOTAL_VERSIONS);
		CHECK(b->state == KMS__KEK_STATE__KEK_CURRENT, "KEK %u is not current", to);
		if (a->state == KMS__KEK_STATE__KEK_RETIRED) {
			CHECK(a->versions == 0 && a->retired_at >= a->created_at && a->retired_at > 0,
			      "KEK %u retired with %llu versions, retired_at %lld", from,
			      (unsigned long long)a->versions, (long long)a->retired_at);
			break;
		}
		CHECK(a->state == KMS__KEK_STATE__KEK_DRAINING, "KEK %u is in state %d, not draining",
		      from, a->state);
		CHECK(e2e_now_ms() < deadline, "KEK %u still draining (%llu versions) after %d ms; "
		      "see %s", from, (unsigned long long)a->versions, DRAIN_WAIT_MS, H.log);
		e2e_sleep_ms(POLL_MS);
	}
	/* Every KEK but the current one is retired. */
	for (size_t i = 0; i < v.n; i++)
		CHECK(v.k[i].id == to || v.k[i].state == KMS__KEK_STATE__KEK_RETIRED,
		      "KEK %u is in state %d", v.k[i].id, v.k[i].state);
}

/* ---- the store and the token, looked at by the test itself ---- */

/* With kmsd down: KEK id's state and how many versions it wraps. */
static void store_expect(uint32_t id, kek_state state, uint64_t versions)
{
	char data[700];
	snprintf(data, sizeof data, "%s/data", H.dir);
	store *st = NULL;
	bool created = false;
	kms_status opened = KMS_FAILED_PRECONDITION;
	/* A kmsd that just died may hold the lock for a moment: bounded. */
	for (int i = 0; i < 100 && opened == KMS_FAILED_PRECONDITION; i++) {
		opened = store_open(data, &st, &created);
		if (opened == KMS_FAILED_PRECONDITION)
			e2e_sleep_ms(100);
	}
	CHECK(opened == KMS_OK, "cannot open the store in %s", data);
	store_kek k;
	uint64_t n = 0;
	kms_status got = store_kek_get(st, id, &k);
	kms_status counted = store_versions_under_kek_count(st, id, &n);
	store_close(st);
	CHECK(got == KMS_OK && counted == KMS_OK, "the store has no KEK %u", id);
	CHECK(k.state == state && n == versions,
	      "the store has KEK %u %s with %llu versions, want %s with %llu", id,
	      kek_state_name(k.state), (unsigned long long)n, kek_state_name(state),
	      (unsigned long long)versions);
}

static bool token_has_kek(uint32_t id)
{
	hsm_config hc = { .module_path = getenv("KMS_TEST_MODULE"),
		          .token_label = getenv("KMS_TEST_TOKEN_LABEL"),
		          .pin_file = getenv("KMS_TEST_PIN_FILE") };
	hsm *h = NULL;
	CHECK(hsm_open(&hc, &h) == KMS_OK, "cannot open the token");
	char name[40];
	hsm_name(id, name);
	hsm_object_id obj = { .len = strlen(name) };
	memcpy(obj.bytes, name, obj.len);
	bool exists = false;
	kms_status st = hsm_kek_exists(h, &obj, &exists);
	hsm_close(h);
	CHECK(st == KMS_OK, "cannot look for %s on the token", name);
	return exists;
}

/* ---- blobs ---- */

static void keep_blob(const uint8_t plaintext[PLAINTEXT_LEN], const ProtobufCBinaryData *b)
{
	pthread_mutex_lock(&blobs_lock);
	if (n_blobs < BLOBS_MAX) {
		sealed *s = &blobs[n_blobs];
		memcpy(s->plaintext, plaintext, PLAINTEXT_LEN);
		s->blob = malloc(b->len);
		if (s->blob) {
			memcpy(s->blob, b->data, b->len);
			s->len = b->len;
			n_blobs++;
		}
	}
	pthread_mutex_unlock(&blobs_lock);
}

static void seal(const char *key)
{
	uint8_t pt[PLAINTEXT_LEN];
	CHECK(getrandom(pt, sizeof pt, 0) == (ssize_t)sizeof pt, "getrandom");
	Kms__Response *r = e2e_encrypt(&H, key, pt, sizeof pt);
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ENCRYPT,
	      "Encrypt under %s: %s", key, r ? r->message : "no reply");
	keep_blob(pt, &r->encrypt->ciphertext_blob);
	kms__response__free_unpacked(r, NULL);
}

static bool opens(const Kms__Response *r, const uint8_t plaintext[PLAINTEXT_LEN])
{
	return r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_DECRYPT &&
	       r->decrypt->plaintext.len == PLAINTEXT_LEN &&
	       !memcmp(r->decrypt->plaintext.data, plaintext, PLAINTEXT_LEN);
}

static void decrypt_all(const char *when)
{
	CHECK(n_blobs > 0, "no blobs");
	for (size_t i = 0; i < n_blobs; i++) {
		Kms__Response *r = e2e_decrypt(&H, blobs[i].blob, blobs[i].len);
		CHECK(opens(r, blobs[i].plaintext), "%s: blob %zu of %zu does not decrypt: %s", when,
		      i, n_blobs, r ? r->message : "no reply");
		kms__response__free_unpacked(r, NULL);
	}
	printf("# %s: %zu blobs decrypt\n", when, n_blobs);
}

/* ---- traffic while the job runs ---- */

typedef struct traffic {
	pthread_t thread;
	unsigned index;
	size_t n_before;   /* blobs[0..n_before) are stable to read */
	size_t rounds;
	size_t failures;
	char why[256];
} traffic;

static atomic_bool traffic_stop;

static void traffic_fail(traffic *t, const char *what, const Kms__Response *r)
{
	if (!t->failures++)
		snprintf(t->why, sizeof t->why, "%s: %s", what, r ? r->message : "no reply");
}

/* One round: seal under a key, open it, open a blob from before. */
static void traffic_round(traffic *t, nng_socket s, size_t i)
{
	uint8_t pt[PLAINTEXT_LEN];
	char id[48];
	if (getrandom(pt, sizeof pt, 0) != (ssize_t)sizeof pt) {
		traffic_fail(t, "getrandom", NULL);
		return;
	}
	snprintf(id, sizeof id, "traffic-%u-%zu-e", t->index, i);
	Kms__Response *enc = e2e_encrypt_on(s, id, keys[(t->index * 7 + i) % N_KEYS], pt,
	                                    sizeof pt);
	if (!enc || enc->status != KMS__STATUS__OK ||
	    enc->result_case != KMS__RESPONSE__RESULT_ENCRYPT) {
		traffic_fail(t, "Encrypt", enc);
		kms__response__free_unpacked(enc, NULL);
		return;
	}
	const ProtobufCBinaryData *b = &enc->encrypt->ciphertext_blob;
	snprintf(id, sizeof id, "traffic-%u-%zu-d", t->index, i);
	Kms__Response *dec = e2e_decrypt_on(s, id, b->data, b->len);
	if (opens(dec, pt))
		keep_blob(pt, b);
	else
		traffic_fail(t, "Decrypt of a fresh blob", dec);
	kms__response__free_unpacked(dec, NULL);
	kms__response__free_unpacked(enc, NULL);
	const sealed *old = &blobs[(t->index * 31 + i) % t->n_before];
	snprintf(id, sizeof id, "traffic-%u-%zu-o", t->index, i);
	dec = e2e_decrypt_on(s, id, old->blob, old->len);
	if (!opens(dec, old->plaintext))
		traffic_fail(t, "Decrypt of a blob from before", dec);
	kms__response__free_unpacked(dec, NULL);
}

static void *traffic_main(void *arg)
{
	traffic *t = arg;
	nng_socket s;
	if (!e2e_socket(&H, 10000, 30000, &s)) {
		traffic_fail(t, "dial", NULL);
		return NULL;
	}
	for (size_t i = 0; i < TRAFFIC_ROUNDS_MAX && !atomic_load(&traffic_stop); i++) {
		traffic_round(t, s, i);
		t->rounds++;
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

/* ---- the steps ---- */

static void make_keys_and_blobs(void **state)
{
	(void)state;
	for (size_t k = 0; k < N_KEYS; k++) {
		Kms__Response *r = e2e_create_key(&H);
		CHECK(r && r->status == KMS__STATUS__OK &&
		      r->result_case == KMS__RESPONSE__RESULT_CREATE_KEY,
		      "CreateKey: %s", r ? r->message : "no reply");
		CHECK(r->create_key->key_metadata->protection == KMS__KEY_PROTECTION__WRAPPED,
		      "a new key is not wrapped");
		snprintf(keys[k], sizeof keys[k], "%s", r->create_key->key_metadata->key_id);
		kms__response__free_unpacked(r, NULL);
		seal(keys[k]);
		for (unsigned v = 2; v <= VERSIONS_PER_KEY; v++) {
			r = e2e_rotate(&H, keys[k]);
			CHECK(r && r->status == KMS__STATUS__OK, "RotateKey %s: %s", keys[k],
			      r ? r->message : "no reply");
			kms__response__free_unpacked(r, NULL);
			if (v % BLOB_EVERY == 0)
				seal(keys[k]);
		}
	}
	kek_views v;
	list_keks(&v);
	char name[40];
	hsm_name(1, name);
	CHECK(v.n == 1 && v.k[0].id == 1 && !strcmp(v.k[0].hsm_id, name) &&
	      v.k[0].state == KMS__KEK_STATE__KEK_CURRENT && v.k[0].versions == TOTAL_VERSIONS,
	      "before any rotation: %zu KEKs, the first %s state %d with %llu versions", v.n,
	      v.k[0].hsm_id, v.k[0].state, (unsigned long long)v.k[0].versions);
	CHECK(token_has_kek(1), "kms-kek-00000001 is not on the token");
	printf("# %d versions under KEK 1, %zu blobs\n", TOTAL_VERSIONS, n_blobs);
}

static void under_traffic(void **state)
{
	(void)state;
	traffic t[TRAFFIC_THREADS];
	atomic_store(&traffic_stop, false);
	for (unsigned i = 0; i < TRAFFIC_THREADS; i++) {
		memset(&t[i], 0, sizeof t[i]);
		t[i].index = i;
		t[i].n_before = n_blobs;
		CHECK(pthread_create(&t[i].thread, NULL, traffic_main, &t[i]) == 0, "pthread_create");
	}
	rotate_to(2, false);
	wait_drained(1, 2);
	atomic_store(&traffic_stop, true);
	for (unsigned i = 0; i < TRAFFIC_THREADS; i++)
		pthread_join(t[i].thread, NULL);
	for (unsigned i = 0; i < TRAFFIC_THREADS; i++) {
		CHECK(t[i].failures == 0, "traffic thread %u: %zu failures, the first: %s", i,
		      t[i].failures, t[i].why);
		CHECK(t[i].rounds > 0, "traffic thread %u made no round", i);
		printf("# traffic thread %u: %zu rounds while KEK 1 drained\n", i, t[i].rounds);
	}
	for (size_t k = 0; k < N_KEYS; k++)
		seal(keys[k]);
	decrypt_all("after the first rotation");
	CHECK(!token_has_kek(1), "kms-kek-00000001 is still on the token after its retirement");
	CHECK(token_has_kek(2), "kms-kek-00000002 is not on the token");
}

static void crash_rewrap_after_hsm(void **state)
{
	(void)state;
	stop();
	start(FAST, "rewrap:after-hsm");
	rotate_to(3, true);
	wait_crash("rewrap:after-hsm");
	store_expect(2, KEK_STATE_DRAINING, TOTAL_VERSIONS); /* nothing committed */
	store_expect(3, KEK_STATE_CURRENT, 0);
	start(FAST, NULL);
	wait_drained(2, 3);
	decrypt_all("after rewrap:after-hsm and a restart");
	CHECK(!token_has_kek(2), "kms-kek-00000002 is still on the token");
}

static void crash_rewrap_after_commit_then_kill9(void **state)
{
	(void)state;
	stop();
	start(FAST, "rewrap:after-commit");
	rotate_to(4, true);
	wait_crash("rewrap:after-commit");
	store_expect(3, KEK_STATE_DRAINING, TOTAL_VERSIONS - PAGE);
	store_expect(4, KEK_STATE_CURRENT, PAGE);

	/* The tick at start-up moves one page, and no other tick comes. */
	start(ONE_PAGE, NULL);
	uint64_t deadline = e2e_now_ms() + DRAIN_WAIT_MS;
	kek_views v;
	for (;;) {
		list_keks(&v);
		if (find_kek(&v, 3)->versions == TOTAL_VERSIONS - 2 * PAGE)
			break;
		CHECK(find_kek(&v, 3)->versions == TOTAL_VERSIONS - PAGE,
		      "KEK 3 wraps %llu versions, want %d then %d",
		      (unsigned long long)find_kek(&v, 3)->versions, TOTAL_VERSIONS - PAGE,
		      TOTAL_VERSIONS - 2 * PAGE);
		CHECK(e2e_now_ms() < deadline, "the start-up tick did not move a page in %d ms",
		      DRAIN_WAIT_MS);
		e2e_sleep_ms(POLL_MS);
	}
	CHECK(find_kek(&v, 3)->state == KMS__KEK_STATE__KEK_DRAINING &&
	      find_kek(&v, 4)->versions == 2 * PAGE,
	      "partial re-wrap: KEK 3 state %d, KEK 4 %llu versions", find_kek(&v, 3)->state,
	      (unsigned long long)find_kek(&v, 4)->versions);
	printf("# partial: KEK 3 wraps %llu, KEK 4 %llu\n",
	       (unsigned long long)find_kek(&v, 3)->versions,
	       (unsigned long long)find_kek(&v, 4)->versions);

	/* One rotation at a time. */
	Kms__Response *r = rotate_kek();
	CHECK(r && r->status == KMS__STATUS__FAILED_PRECONDITION &&
	      strstr(r->message, "kms-kek-00000003"),
	      "a second RotateKek while KEK 3 drains: status %d (%s), want FAILED_PRECONDITION "
	      "naming kms-kek-00000003", r ? (int)r->status : -1, r ? r->message : "no reply");
	kms__response__free_unpacked(r, NULL);
	decrypt_all("with the re-wrap part done (two KEKs in use)");
	list_keks(&v);
	CHECK(v.n == 4 && find_kek(&v, 3)->versions == TOTAL_VERSIONS - 2 * PAGE,
	      "the refused rotation changed the KEKs");

	harness_kill9(&H);
	store_expect(3, KEK_STATE_DRAINING, TOTAL_VERSIONS - 2 * PAGE);
	store_expect(4, KEK_STATE_CURRENT, 2 * PAGE);
	start(FAST, NULL);
	wait_drained(3, 4);
	decrypt_all("after SIGKILL mid re-wrap and a restart");
	CHECK(!token_has_kek(3), "kms-kek-00000003 is still on the token");
}

static void crash_retire_after_hsm(void **state)
{
	(void)state;
	stop();
	start(FAST, "retire:after-hsm");
	rotate_to(5, true);
	wait_crash("retire:after-hsm");
	store_expect(4, KEK_STATE_DRAINING, 0); /* drained, not yet retired */
	store_expect(5, KEK_STATE_CURRENT, TOTAL_VERSIONS);
	CHECK(!token_has_kek(4), "kms-kek-00000004 is still on the token after retire:after-hsm");
	start(FAST, NULL);
	wait_drained(4, 5);
	decrypt_all("after retire:after-hsm and a restart");
	for (uint32_t id = 1; id <= 4; id++)
		CHECK(!token_has_kek(id), "retired KEK %u is still on the token", id);
	CHECK(token_has_kek(5), "kms-kek-00000005 is not on the token");
	kek_views v;
	list_keks(&v);
	CHECK(v.n == 5, "%zu KEKs, want 5", v.n);
}

static int setup(void **state)
{
	(void)state;
	harness_options o = { .extra_config = FAST };
	return harness_start(&H, &o) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	for (size_t i = 0; i < n_blobs; i++)
		free(blobs[i].blob);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(make_keys_and_blobs),
		cmocka_unit_test(under_traffic),
		cmocka_unit_test(crash_rewrap_after_hsm),
		cmocka_unit_test(crash_rewrap_after_commit_then_kill9),
		cmocka_unit_test(crash_retire_after_hsm),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
