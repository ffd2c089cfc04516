/*
 * test_crash_mixed: kill -9 at random moments under a mixed workload, and
 * nothing acknowledged is lost (docs/robustness.md), against a real kmsd
 * on a real SoftHSM token.
 *
 * Four client threads, each on its own socket:
 *   - two on the data plane: Encrypt, GenerateDataKey and Decrypt of
 *     earlier blobs, on three keys;
 *   - one on the control plane: CreateKey, RotateKey, PutKeyPolicy,
 *     CreateGrant, RevokeGrant, and now and then RotateKek (its re-wrap
 *     runs in the background tick, every second here);
 *   - one on consent and data principals: ImportConsent, SetConsentStatus
 *     (pause, resume, revoke), seals and decrypts for data principals under
 *     a per-data-principal key, EraseDataPrincipal.
 * Each iteration kmsd gets SIGKILL a random 30..600 ms after the load's
 * first answer and is started again. Then, every iteration:
 *   - every change answered OK is there: each key created exists, each key's
 *     primary version is at least the one its last acknowledged rotation
 *     gave, its policy is the last acknowledged one or the one in flight,
 *     grants live or revoked as acknowledged, consents in the status last
 *     acknowledged, erased data principals erased, the KEKs at least as
 *     many as acknowledged; a change in flight at the kill may be either
 *     way, and the model takes what kmsd shows;
 *   - every blob received still decrypts with its context to its
 *     plaintext (a data principal's: unless erased as acknowledged, then
 *     FAILED_PRECONDITION);
 *   - the published audit log verifies with the verifier key, extends the
 *     checkpoint checked the iteration before and the one published just
 *     before the kill, and holds every answered request's entry exactly
 *     once with the status it was answered with (a change answered OK: its
 *     intent and its outcome).
 * No assertion depends on when the kill lands. KMS_CRASH_SEED=N replays a
 * run (the seed is printed); KMS_CRASH_ITERATIONS=N sets how many (default
 * 10; scripts/crash-soak runs 50).
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

#include <protobuf-c/protobuf-c.h>

#include "kms/store/store.h"
#include "tests/support/audit_check.h"
#include "tests/support/consent_test.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define ITERATIONS_DEFAULT 10
#define ITERATIONS_MAX 1000
#define DATA_KEYS 3
#define DATA_THREADS 2
#define THREADS (DATA_THREADS + 2)
#define KILL_DELAY_MIN_MS 30
#define KILL_DELAY_MAX_MS 600
#define REQUESTS_MAX 5000          /* per thread per iteration */
#define LOAD_START_MS 15000
#define SEND_MS 2000
#define RECV_MS 30000
#define ID_MAX 48
#define BLOBS_PER_ITERATION 40     /* kept for the checks (more are made) */
#define DP_BLOBS_PER_ITERATION 20
#define SYNC_WAIT_MS 30000
#define CREATED_MAX (ITERATIONS_MAX * 64)
#define POLICY_FMT "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"p-%u\",\"Effect\":" \
                   "\"Allow\",\"Principal\":\"test-admin\",\"Action\":\"*\"}]}"
#define GRANTEE "crash-app"
#define CUSTOMER "9999999999@finvu"

static const char *const CONFIG = "[audit]\ncheckpoint_ms = 50\n\n[limits]\ntick_seconds = 1\n";

#define CHECK(cond, ...)                        \
	do {                                    \
		if (!(cond))                    \
			fail_msg(__VA_ARGS__);  \
	} while (0)

/* ---- the model: what the clients were told ---- */

typedef struct sealed {
	uint8_t *blob;
	size_t len;
	uint8_t pt[32];
	size_t pt_len;
	char ctx[ID_MAX];   /* the value of "c", or the dp */
	int dp;             /* index in g.dps, -1: a data key's */
} sealed;

typedef struct key_model {
	char id[E2E_KEY_ID_SIZE];
	uint32_t primary;          /* after the last acknowledged rotation */
	bool rotate_pending;
	unsigned policy, policy_pending; /* Sid numbers; 0: none */
} key_model;

typedef struct grant_model {
	char id[64];
	int key;
	bool revoked, revoke_pending;
} grant_model;

typedef struct consent_model {
	char id[ID_MAX];
	const char *status, *pending; /* "ACTIVE", "PAUSED", "REVOKED" */
} consent_model;

typedef struct dp_model {
	char name[64];
	bool erased, erase_pending;
	size_t blobs;
} dp_model;

typedef struct answered {
	char id[ID_MAX];
	int status;
	bool change;
} answered;

typedef struct array {
	void *items;
	size_t n, cap, size;
} array;

static struct {
	pthread_mutex_t lock;
	key_model keys[DATA_KEYS];
	array created;   /* char[E2E_KEY_ID_SIZE] */
	array sealed;    /* sealed */
	array grants;    /* grant_model */
	array consents;  /* consent_model */
	array dps;       /* dp_model */
	array answers;   /* answered, this iteration */
	unsigned kek_rotations;
	bool kek_pending;
	unsigned policy_seq, consent_seq, dp_seq;
	char dp_key[E2E_KEY_ID_SIZE], hmac_key[E2E_KEY_ID_SIZE];
	consent_signer cm;
	/* totals */
	uint64_t answered_total, changes_total, blobs_checked, in_flight_at_kill;
	unsigned kills_mid_request;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER };

static harness H;
static char g_vkey[AUDIT_VKEY_MAX];
static char *g_prev_note;      /* the checkpoint checked the iteration before */

static void *array_push(array *a, size_t size)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void *grown = realloc(a->items, cap * size);
		if (!grown)
			abort();
		a->items = grown;
		a->cap = cap;
	}
	a->size = size;
	void *slot = (uint8_t *)a->items + a->n++ * size;
	memset(slot, 0, size);
	return slot;
}

#define AT(a, type, i) (&((type *)(a).items)[i])

/* ---- requests ---- */

typedef struct client {
	unsigned index, iteration;
	uint64_t rng;
	nng_socket s;
	atomic_bool *killing;
	unsigned seq, sent, answered, kept_blobs;
	bool in_flight;
	char failure[1024];
} client;

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static unsigned pick(client *c, unsigned n)
{
	return n ? (unsigned)(next_rand(&c->rng) % n) : 0;
}

static void note_answer(const char *id, int status, bool change)
{
	pthread_mutex_lock(&g.lock);
	answered *a = array_push(&g.answers, sizeof *a);
	snprintf(a->id, sizeof a->id, "%s", id);
	a->status = status;
	a->change = change;
	pthread_mutex_unlock(&g.lock);
}

/* Sends req with a fresh id; NULL when no answer came (the kill). Every
 * answer is noted for the audit check. */
static Kms__Response *send_req(client *c, Kms__Request *req, bool change)
{
	char id[ID_MAX];
	if (c->index == 99)
		snprintf(id, sizeof id, "check-%u-%u", c->iteration, c->seq++);
	else
		snprintf(id, sizeof id, "cm-%u-%u-%u", c->iteration, c->index, c->seq++);
	req->request_id = id;
	c->sent++;
	c->in_flight = true;
	Kms__Response *r = harness_call_on(&H, c->s, req);
	req->request_id = NULL;
	if (!r)
		return NULL;
	c->in_flight = false;
	c->answered++;
	if (strcmp(r->request_id, id) != 0)
		snprintf(c->failure, sizeof c->failure, "%s answered as %s", id, r->request_id);
	else if (r->status == KMS__STATUS__INTERNAL)
		snprintf(c->failure, sizeof c->failure, "%s: INTERNAL: %s", id, r->message);
	note_answer(id, r->status, change);
	return r;
}

/* An answer that must be OK. */
static bool expect_ok(client *c, Kms__Response *r, const char *what)
{
	if (!r || c->failure[0])
		return false;
	if (r->status == KMS__STATUS__OK)
		return true;
	snprintf(c->failure, sizeof c->failure, "%s: status %d: %s", what, r->status, r->message);
	return false;
}

typedef struct ctx1 {
	Kms__StringPair pair, *pairs[1];
} ctx1;

static void ctx_set(ctx1 *x, const char *name, const char *value)
{
	kms__string_pair__init(&x->pair);
	x->pair.key = (char *)(uintptr_t)name;
	x->pair.value = (char *)(uintptr_t)value;
	x->pairs[0] = &x->pair;
}

static void keep_blob(const ProtobufCBinaryData *blob, const uint8_t *pt, size_t pt_len,
                      const char *ctx, int dp)
{
	pthread_mutex_lock(&g.lock);
	sealed *s = array_push(&g.sealed, sizeof *s);
	s->blob = malloc(blob->len);
	if (!s->blob)
		abort();
	memcpy(s->blob, blob->data, blob->len);
	s->len = blob->len;
	memcpy(s->pt, pt, pt_len);
	s->pt_len = pt_len;
	snprintf(s->ctx, sizeof s->ctx, "%s", ctx);
	s->dp = dp;
	if (dp >= 0)
		AT(g.dps, dp_model, dp)->blobs++;
	pthread_mutex_unlock(&g.lock);
}

static Kms__Response *decrypt_on(client *c, const sealed *s, const char *ctx_name)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ctx1 x;
	ctx_set(&x, ctx_name, s->ctx);
	d.ciphertext_blob.data = s->blob;
	d.ciphertext_blob.len = s->len;
	d.encryption_context = x.pairs;
	d.n_encryption_context = 1;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	return send_req(c, &req, false);
}

/* A copy of a random kept blob of data keys (dp < 0) or of a data
 * principal not erased and not being erased (dp >= 0); false if none. */
static bool pick_blob(client *c, bool of_dp, sealed *out)
{
	bool found = false;
	pthread_mutex_lock(&g.lock);
	for (int tries = 0; tries < 8 && !found && g.sealed.n; tries++) {
		const sealed *s = AT(g.sealed, sealed, pick(c, (unsigned)g.sealed.n));
		if ((s->dp >= 0) != of_dp)
			continue;
		if (of_dp && (AT(g.dps, dp_model, s->dp)->erased ||
		              AT(g.dps, dp_model, s->dp)->erase_pending))
			continue;
		*out = *s;
		out->blob = malloc(s->len);
		if (!out->blob)
			abort();
		memcpy(out->blob, s->blob, s->len);
		found = true;
	}
	pthread_mutex_unlock(&g.lock);
	return found;
}

static void opens_or_fail(client *c, Kms__Response *r, const sealed *s, const char *what)
{
	if (!expect_ok(c, r, what))
		return;
	if (r->decrypt->plaintext.len != s->pt_len ||
	    memcmp(r->decrypt->plaintext.data, s->pt, s->pt_len) != 0)
		snprintf(c->failure, sizeof c->failure, "%s gave another plaintext", what);
}

/* ---- the data plane ---- */

static void data_step(client *c)
{
	unsigned op = pick(c, 4);
	const char *key = g.keys[pick(c, DATA_KEYS)].id;
	char ctx[ID_MAX];
	snprintf(ctx, sizeof ctx, "c-%u-%u-%u", c->iteration, c->index, c->seq);
	ctx1 x;
	ctx_set(&x, "c", ctx);
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__Response *r = NULL;
	bool keep = c->kept_blobs < BLOBS_PER_ITERATION / DATA_THREADS;
	if (op <= 1) {
		uint8_t pt[32];
		size_t n = 1 + pick(c, sizeof pt);
		for (size_t i = 0; i < n; i++)
			pt[i] = (uint8_t)next_rand(&c->rng);
		Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
		e.key_id = (char *)(uintptr_t)key;
		e.plaintext.data = pt;
		e.plaintext.len = n;
		e.encryption_context = x.pairs;
		e.n_encryption_context = 1;
		req.op_case = KMS__REQUEST__OP_ENCRYPT;
		req.encrypt = &e;
		r = send_req(c, &req, false);
		if (expect_ok(c, r, "Encrypt") && keep) {
			keep_blob(&r->encrypt->ciphertext_blob, pt, n, ctx, -1);
			c->kept_blobs++;
		}
	} else if (op == 2) {
		Kms__GenerateDataKeyRequest gk = KMS__GENERATE_DATA_KEY_REQUEST__INIT;
		gk.key_id = (char *)(uintptr_t)key;
		gk.encryption_context = x.pairs;
		gk.n_encryption_context = 1;
		req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY;
		req.generate_data_key = &gk;
		r = send_req(c, &req, false);
		if (expect_ok(c, r, "GenerateDataKey") && keep &&
		    r->generate_data_key->plaintext.len <= 32) {
			keep_blob(&r->generate_data_key->ciphertext_blob,
			          r->generate_data_key->plaintext.data,
			          r->generate_data_key->plaintext.len, ctx, -1);
			c->kept_blobs++;
		}
	} else {
		sealed s;
		if (!pick_blob(c, false, &s))
			return;
		r = decrypt_on(c, &s, "c");
		opens_or_fail(c, r, &s, "Decrypt of an acknowledged blob");
		free(s.blob);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
	else if (!atomic_load(c->killing))
		snprintf(c->failure, sizeof c->failure, "no answer before the kill");
}

/* ---- the control plane ---- */

static void create_key_step(client *c)
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = "crash-mixed";
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "CreateKey")) {
		pthread_mutex_lock(&g.lock);
		if (g.created.n < CREATED_MAX)
			snprintf(array_push(&g.created, E2E_KEY_ID_SIZE), E2E_KEY_ID_SIZE, "%s",
			         r->create_key->key_metadata->key_id);
		pthread_mutex_unlock(&g.lock);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void rotate_key_step(client *c, key_model *k)
{
	Kms__RotateKeyRequest rk = KMS__ROTATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	rk.key_id = k->id;
	req.op_case = KMS__REQUEST__OP_ROTATE_KEY;
	req.rotate_key = &rk;
	k->rotate_pending = true;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "RotateKey")) {
		pthread_mutex_lock(&g.lock);
		if (r->rotate_key->key_metadata->primary_version > k->primary)
			k->primary = r->rotate_key->key_metadata->primary_version;
		k->rotate_pending = false;
		pthread_mutex_unlock(&g.lock);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void put_policy_step(client *c, key_model *k)
{
	char doc[300];
	unsigned seq = ++g.policy_seq;
	snprintf(doc, sizeof doc, POLICY_FMT, seq);
	Kms__PutKeyPolicyRequest pp = KMS__PUT_KEY_POLICY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	pp.key_id = k->id;
	pp.policy = doc;
	req.op_case = KMS__REQUEST__OP_PUT_KEY_POLICY;
	req.put_key_policy = &pp;
	k->policy_pending = seq;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "PutKeyPolicy")) {
		k->policy = seq;
		k->policy_pending = 0;
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void create_grant_step(client *c, int key)
{
	Kms__CreateGrantRequest cg = KMS__CREATE_GRANT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	char *ops[1] = { "encrypt" };
	cg.key_id = g.keys[key].id;
	cg.grantee = GRANTEE;
	cg.operations = ops;
	cg.n_operations = 1;
	req.op_case = KMS__REQUEST__OP_CREATE_GRANT;
	req.create_grant = &cg;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "CreateGrant")) {
		pthread_mutex_lock(&g.lock);
		grant_model *gm = array_push(&g.grants, sizeof *gm);
		snprintf(gm->id, sizeof gm->id, "%s", r->create_grant->grant->grant_id);
		gm->key = key;
		pthread_mutex_unlock(&g.lock);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void revoke_grant_step(client *c)
{
	grant_model *gm = NULL;
	pthread_mutex_lock(&g.lock);
	for (int tries = 0; tries < 8 && !gm && g.grants.n; tries++) {
		grant_model *x = AT(g.grants, grant_model, pick(c, (unsigned)g.grants.n));
		if (!x->revoked && !x->revoke_pending)
			gm = x;
	}
	char id[64];
	if (gm) {
		gm->revoke_pending = true;
		snprintf(id, sizeof id, "%s", gm->id);
	}
	size_t at = gm ? (size_t)(gm - (grant_model *)g.grants.items) : 0;
	pthread_mutex_unlock(&g.lock);
	if (!gm)
		return;
	Kms__RevokeGrantRequest rg = KMS__REVOKE_GRANT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	rg.grant_id = id;
	req.op_case = KMS__REQUEST__OP_REVOKE_GRANT;
	req.revoke_grant = &rg;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "RevokeGrant")) {
		pthread_mutex_lock(&g.lock);
		gm = AT(g.grants, grant_model, at);
		gm->revoked = true;
		gm->revoke_pending = false;
		pthread_mutex_unlock(&g.lock);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void rotate_kek_step(client *c)
{
	Kms__RotateKekRequest rk = KMS__ROTATE_KEK_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ROTATE_KEK;
	req.rotate_kek = &rk;
	g.kek_pending = true;
	Kms__Response *r = send_req(c, &req, true);
	if (r && r->status == KMS__STATUS__FAILED_PRECONDITION) {
		g.kek_pending = false; /* one rotation at a time: refused */
	} else if (expect_ok(c, r, "RotateKek")) {
		g.kek_rotations++;
		g.kek_pending = false;
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void control_step(client *c, bool *kek_done)
{
	unsigned op = pick(c, 100);
	key_model *k = &g.keys[pick(c, DATA_KEYS)];
	if (op < 15)
		create_key_step(c);
	else if (op < 35)
		rotate_key_step(c, k);
	else if (op < 60)
		put_policy_step(c, k);
	else if (op < 80)
		create_grant_step(c, (int)(k - g.keys));
	else if (op < 96 || *kek_done)
		revoke_grant_step(c);
	else {
		rotate_kek_step(c);
		*kek_done = true;
	}
}

/* ---- consent and data principals ---- */

static void import_consent_step(client *c)
{
	char cid[ID_MAX];
	snprintf(cid, sizeof cid, "crash-c-%u", ++g.consent_seq);
	time_t now = time(NULL);
	consent_spec spec = { .id = cid, .customer = CUSTOMER, .purpose = "101",
		              .start = now - 60, .expiry = now + 7 * 86400 };
	size_t len;
	char *doc = consent_artefact_make(&g.cm, &spec, &len);
	Kms__ImportConsentRequest ic = KMS__IMPORT_CONSENT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ic.artefact = (ProtobufCBinaryData){ len, (uint8_t *)doc };
	req.op_case = KMS__REQUEST__OP_IMPORT_CONSENT;
	req.import_consent = &ic;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "ImportConsent")) {
		pthread_mutex_lock(&g.lock);
		consent_model *m = array_push(&g.consents, sizeof *m);
		snprintf(m->id, sizeof m->id, "%s", r->import_consent->consent->id);
		m->status = "ACTIVE";
		pthread_mutex_unlock(&g.lock);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
	free(doc);
}

static void consent_status_step(client *c)
{
	if (!g.consents.n)
		return;
	consent_model *m = AT(g.consents, consent_model, pick(c, (unsigned)g.consents.n));
	if (!strcmp(m->status, "REVOKED"))
		return;
	Kms__ConsentAction action;
	const char *to;
	if (pick(c, 4) == 0) {
		action = KMS__CONSENT_ACTION__CONSENT_REVOKE;
		to = "REVOKED";
	} else if (!strcmp(m->status, "ACTIVE")) {
		action = KMS__CONSENT_ACTION__CONSENT_PAUSE;
		to = "PAUSED";
	} else {
		action = KMS__CONSENT_ACTION__CONSENT_RESUME;
		to = "ACTIVE";
	}
	Kms__SetConsentStatusRequest s = KMS__SET_CONSENT_STATUS_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	s.consent_id = m->id;
	s.action = action;
	req.op_case = KMS__REQUEST__OP_SET_CONSENT_STATUS;
	req.set_consent_status = &s;
	m->pending = to;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "SetConsentStatus")) {
		m->status = to;
		m->pending = NULL;
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

/* A data principal's pseudonym-shaped name: kp_0000abcd_1_ and 32 base32
 * digits of n. */
static void dp_name(unsigned n, char out[64])
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	char digits[33];
	for (int i = 31; i >= 0; i--) {
		digits[i] = b32[n % 32];
		n /= 32;
	}
	digits[32] = '\0';
	snprintf(out, 64, "kp_0000abcd_1_%s", digits);
}

static void dp_seal_step(client *c)
{
	pthread_mutex_lock(&g.lock);
	int dp = -1;
	for (int tries = 0; tries < 4 && dp < 0 && g.dps.n; tries++) {
		unsigned i = pick(c, (unsigned)g.dps.n);
		if (!AT(g.dps, dp_model, i)->erased && !AT(g.dps, dp_model, i)->erase_pending)
			dp = (int)i;
	}
	if (dp < 0 || pick(c, 4) == 0) {
		dp_model *m = array_push(&g.dps, sizeof *m);
		dp_name(++g.dp_seq, m->name);
		dp = (int)g.dps.n - 1;
	}
	char name[64];
	snprintf(name, sizeof name, "%s", AT(g.dps, dp_model, dp)->name);
	pthread_mutex_unlock(&g.lock);

	uint8_t pt[24];
	snprintf((char *)pt, sizeof pt, "dp-%u-%u", c->iteration, c->seq);
	size_t n = strlen((char *)pt);
	ctx1 x;
	ctx_set(&x, "dp", name);
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = g.dp_key;
	e.plaintext.data = pt;
	e.plaintext.len = n;
	e.encryption_context = x.pairs;
	e.n_encryption_context = 1;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	Kms__Response *r = send_req(c, &req, false);
	if (expect_ok(c, r, "Encrypt for a data principal") &&
	    c->kept_blobs < DP_BLOBS_PER_ITERATION) {
		keep_blob(&r->encrypt->ciphertext_blob, pt, n, name, dp);
		c->kept_blobs++;
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void dp_decrypt_step(client *c)
{
	sealed s;
	if (!pick_blob(c, true, &s))
		return;
	Kms__Response *r = decrypt_on(c, &s, "dp");
	opens_or_fail(c, r, &s, "Decrypt for a data principal");
	if (r)
		kms__response__free_unpacked(r, NULL);
	free(s.blob);
}

static void erase_step(client *c)
{
	pthread_mutex_lock(&g.lock);
	dp_model *m = NULL;
	for (int tries = 0; tries < 4 && !m && g.dps.n; tries++) {
		dp_model *x = AT(g.dps, dp_model, pick(c, (unsigned)g.dps.n));
		if (x->blobs && !x->erased && !x->erase_pending)
			m = x;
	}
	if (m)
		m->erase_pending = true;
	size_t at = m ? (size_t)(m - (dp_model *)g.dps.items) : 0;
	char name[64];
	if (m)
		snprintf(name, sizeof name, "%s", m->name);
	pthread_mutex_unlock(&g.lock);
	if (!m)
		return;
	Kms__EraseDataPrincipalRequest e = KMS__ERASE_DATA_PRINCIPAL_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = g.dp_key;
	e.data_principal = name;
	e.basis = "crash test";
	req.op_case = KMS__REQUEST__OP_ERASE_DATA_PRINCIPAL;
	req.erase_data_principal = &e;
	Kms__Response *r = send_req(c, &req, true);
	if (expect_ok(c, r, "EraseDataPrincipal")) {
		pthread_mutex_lock(&g.lock);
		m = AT(g.dps, dp_model, at);
		m->erased = true;
		m->erase_pending = false;
		pthread_mutex_unlock(&g.lock);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
}

static void consent_dp_step(client *c)
{
	unsigned op = pick(c, 100);
	if (op < 20)
		import_consent_step(c);
	else if (op < 40)
		consent_status_step(c);
	else if (op < 75)
		dp_seal_step(c);
	else if (op < 90)
		dp_decrypt_step(c);
	else
		erase_step(c);
}

static void *client_main(void *arg)
{
	client *c = arg;
	if (!e2e_socket(&H, SEND_MS, RECV_MS, &c->s)) {
		snprintf(c->failure, sizeof c->failure, "client %u: cannot dial", c->index);
		return NULL;
	}
	bool kek_done = false;
	for (unsigned i = 0; i < REQUESTS_MAX && !c->failure[0]; i++) {
		unsigned answered_before = c->answered;
		if (c->index < DATA_THREADS)
			data_step(c);
		else if (c->index == DATA_THREADS)
			control_step(c, &kek_done);
		else
			consent_dp_step(c);
		if (c->in_flight) {
			if (!atomic_load(c->killing))
				snprintf(c->failure, sizeof c->failure, "client %u: no answer before the "
				         "kill; see %s", c->index, H.log);
			break;
		}
		(void)answered_before;
	}
	(void)kms_nng_close_bounded(c->s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

/* ---- checks after a restart ---- */

static Kms__Response *call(Kms__Request *req)
{
	Kms__Response *r = harness_call(&H, req);
	CHECK(r, "no answer from kmsd; see %s", H.log);
	return r;
}

static void check_keys(void)
{
	for (int i = 0; i < DATA_KEYS; i++) {
		key_model *k = &g.keys[i];
		Kms__Response *r = e2e_describe(&H, k->id);
		CHECK(r && r->status == KMS__STATUS__OK, "DescribeKey %s after the restart", k->id);
		uint32_t primary = r->describe_key->key_metadata->primary_version;
		kms__response__free_unpacked(r, NULL);
		CHECK(primary >= k->primary, "key %s: primary version %u, but a rotation to %u was "
		      "acknowledged", k->id, primary, k->primary);
		CHECK(primary <= k->primary + (k->rotate_pending ? 1 : 0),
		      "key %s: primary version %u, past the %u acknowledged", k->id, primary,
		      k->primary);
		k->primary = primary;
		k->rotate_pending = false;

		Kms__GetKeyPolicyRequest gp = KMS__GET_KEY_POLICY_REQUEST__INIT;
		Kms__Request req = KMS__REQUEST__INIT;
		gp.key_id = k->id;
		req.op_case = KMS__REQUEST__OP_GET_KEY_POLICY;
		req.get_key_policy = &gp;
		r = call(&req);
		CHECK(r->status == KMS__STATUS__OK, "GetKeyPolicy %s: %s", k->id, r->message);
		const char *sid = strstr(r->get_key_policy->policy, "\"p-");
		unsigned seq = sid ? (unsigned)strtoul(sid + 3, NULL, 10) : 0;
		kms__response__free_unpacked(r, NULL);
		CHECK(seq == k->policy || (k->policy_pending && seq == k->policy_pending),
		      "key %s: policy p-%u, but p-%u was the last acknowledged (p-%u in flight)",
		      k->id, seq, k->policy, k->policy_pending);
		k->policy = seq;
		k->policy_pending = 0;
	}
	for (size_t i = 0; i < g.created.n; i++) {
		const char *id = (const char *)g.created.items + i * E2E_KEY_ID_SIZE;
		Kms__Response *r = e2e_describe(&H, id);
		CHECK(r && r->status == KMS__STATUS__OK, "key %s was created (acknowledged) but "
		      "DescribeKey says %s", id, r ? r->message : "nothing");
		kms__response__free_unpacked(r, NULL);
	}
}

static int grant_state_of(const char *key, const char *grant_id)
{
	char token[256] = "";
	for (int page = 0; page < 100; page++) {
		Kms__ListGrantsRequest lg = KMS__LIST_GRANTS_REQUEST__INIT;
		Kms__Request req = KMS__REQUEST__INIT;
		lg.key_id = (char *)(uintptr_t)key;
		lg.limit = 1000;
		lg.page_token = token;
		req.op_case = KMS__REQUEST__OP_LIST_GRANTS;
		req.list_grants = &lg;
		Kms__Response *r = call(&req);
		CHECK(r->status == KMS__STATUS__OK, "ListGrants %s: %s", key, r->message);
		int state = -1;
		for (size_t i = 0; i < r->list_grants->n_grants; i++)
			if (!strcmp(r->list_grants->grants[i]->grant_id, grant_id))
				state = r->list_grants->grants[i]->state;
		snprintf(token, sizeof token, "%s", r->list_grants->next_page_token);
		kms__response__free_unpacked(r, NULL);
		if (state >= 0 || !token[0])
			return state;
	}
	fail_msg("ListGrants %s: more than 100 pages", key);
	return -1;
}

static void check_grants(void)
{
	for (size_t i = 0; i < g.grants.n; i++) {
		grant_model *gm = AT(g.grants, grant_model, i);
		int state = grant_state_of(g.keys[gm->key].id, gm->id);
		bool revoked = state == KMS__GRANT_STATE__GRANT_REVOKED;
		CHECK(state == KMS__GRANT_STATE__GRANT_LIVE || revoked,
		      "grant %s was created (acknowledged) but is %s", gm->id,
		      state < 0 ? "not listed" : "neither live nor revoked");
		if (gm->revoked)
			CHECK(revoked, "grant %s was revoked (acknowledged) but is live", gm->id);
		else if (!gm->revoke_pending)
			CHECK(!revoked, "grant %s is revoked, but no revocation was sent", gm->id);
		gm->revoked = revoked;
		gm->revoke_pending = false;
	}
}

static void check_consents(void)
{
	for (size_t i = 0; i < g.consents.n; i++) {
		consent_model *m = AT(g.consents, consent_model, i);
		Kms__DescribeConsentRequest d = KMS__DESCRIBE_CONSENT_REQUEST__INIT;
		Kms__Request req = KMS__REQUEST__INIT;
		d.consent_id = m->id;
		req.op_case = KMS__REQUEST__OP_DESCRIBE_CONSENT;
		req.describe_consent = &d;
		Kms__Response *r = call(&req);
		CHECK(r->status == KMS__STATUS__OK, "consent %s was imported (acknowledged) but "
		      "DescribeConsent says %s", m->id, r->message);
		const char *now = r->describe_consent->consent->status;
		const char *was = m->status;
		if (!strcmp(now, was))
			m->status = was;
		else if (m->pending && !strcmp(now, m->pending))
			m->status = m->pending;
		else
			fail_msg("consent %s is %s; %s was acknowledged (%s in flight)", m->id, now, was,
			         m->pending ? m->pending : "nothing");
		m->pending = NULL;
		kms__response__free_unpacked(r, NULL);
	}
}

/* Decrypts every kept blob; a data principal's answers FAILED_PRECONDITION
 * once erased. Settles erasures that were in flight. */
static void check_blobs(void)
{
	static unsigned round;
	client c = { .index = 99, .iteration = ++round };
	CHECK(e2e_socket(&H, SEND_MS, RECV_MS, &c.s), "cannot dial kmsd");
	atomic_bool never = false;
	c.killing = &never;
	for (size_t i = 0; i < g.sealed.n; i++) {
		const sealed *s = AT(g.sealed, sealed, i);
		Kms__Response *r = decrypt_on(&c, s, s->dp >= 0 ? "dp" : "c");
		CHECK(r, "no answer to a decrypt; see %s", H.log);
		dp_model *m = s->dp >= 0 ? AT(g.dps, dp_model, s->dp) : NULL;
		if (m && r->status == KMS__STATUS__FAILED_PRECONDITION &&
		    strstr(r->message, "erased")) {
			CHECK(m->erased || m->erase_pending, "data principal %s is erased, but no "
			      "erasure was sent: %s", m->name, r->message);
			m->erased = true;
		} else {
			CHECK(r->status == KMS__STATUS__OK, "blob %zu (%s) does not open: status %d: "
			      "%s", i, s->ctx, r->status, r->message);
			CHECK(r->decrypt->plaintext.len == s->pt_len &&
			      !memcmp(r->decrypt->plaintext.data, s->pt, s->pt_len),
			      "blob %zu opens to another plaintext", i);
			CHECK(!m || !m->erased, "data principal %s was erased (acknowledged) but its "
			      "blob opens", m ? m->name : "");
		}
		kms__response__free_unpacked(r, NULL);
		g.blobs_checked++;
	}
	(void)kms_nng_close_bounded(c.s, TEST_CLOSE_WAIT_MS);
	for (size_t i = 0; i < g.dps.n; i++)
		AT(g.dps, dp_model, i)->erase_pending = false;
	/* the checks' own requests are in the log too: nothing more to note */
}

static void check_keks(void)
{
	Kms__ListKeksRequest l = KMS__LIST_KEKS_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_LIST_KEKS;
	req.list_keks = &l;
	Kms__Response *r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "ListKeks: %s", r->message);
	unsigned keks = (unsigned)r->list_keks->n_keks;
	kms__response__free_unpacked(r, NULL);
	CHECK(keks >= 1 + g.kek_rotations, "%u KEKs, but %u rotations were acknowledged", keks,
	      g.kek_rotations);
	CHECK(keks <= 1 + g.kek_rotations + (g.kek_pending ? 1 : 0),
	      "%u KEKs after %u acknowledged rotations", keks, g.kek_rotations);
	g.kek_rotations = keks - 1;
	g.kek_pending = false;
}

/* Whole records in log.bin now (a batch being written is not counted). */
/* The whole records of log.bin once one of them is request_id's entry:
 * at once for kmsd's own log; on PostgreSQL, the fleet's log
 * (docs/scale-out.md) numbers the entry and copies it into log.bin a
 * moment after the reply, so this waits for it (at most SYNC_WAIT_MS). */
static uint64_t log_bin_records_with(const char *request_id)
{
	char dir[700], path[800], needle[ID_MAX + 32];
	audit_dir(&H, NULL, dir, sizeof dir);
	snprintf(path, sizeof path, "%s/log.bin", dir);
	snprintf(needle, sizeof needle, "\"request_id\":\"%s\"", request_id);
	uint64_t until = e2e_now_ms() + SYNC_WAIT_MS;
	for (;;) {
		size_t len;
		uint8_t *p = (uint8_t *)harness_read_file(path, &len);
		CHECK(p, "cannot read %s", path);
		uint64_t n = 0;
		bool found = false;
		for (size_t off = 0; len - off >= 2;) {
			size_t entry = ((size_t)p[off] << 8) | p[off + 1];
			if (entry == 0 || len - off - 2 < entry + TLOG_HASH_SIZE)
				break;
			found = found || memmem(p + off + 2, entry, needle, strlen(needle)) != NULL;
			off += 2 + entry + TLOG_HASH_SIZE;
			n++;
		}
		free(p);
		if (found)
			return n;
		CHECK(e2e_now_ms() < until, "%s is not in log.bin after %d ms", request_id,
		      SYNC_WAIT_MS);
		e2e_sleep_ms(10);
	}
}

typedef struct id_ref {
	const char *id, *phase;
	json_t *entry;
} id_ref;

static int id_ref_cmp(const void *a, const void *b)
{
	const id_ref *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : strcmp(x->phase, y->phase);
}

/* How many entries have id and phase ("" for none); *entry the first. */
static size_t count_ref(const id_ref *refs, size_t n, const char *id, const char *phase,
                        json_t **entry)
{
	size_t lo = 0, hi = n;
	id_ref key = { id, phase, NULL };
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (id_ref_cmp(&refs[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t k = 0;
	*entry = lo < n ? refs[lo].entry : NULL;
	while (lo + k < n && !id_ref_cmp(&refs[lo + k], &key))
		k++;
	return k;
}

static const char *status_name(int status)
{
	const ProtobufCEnumValue *v =
	        protobuf_c_enum_descriptor_get_value(&kms__status__descriptor, status);
	return v ? v->name : "?";
}

/* The published log verifies, extends every checkpoint seen, and holds
 * every answer of this iteration. */
static void check_audit(unsigned it, const char *before_kill)
{
	char sync_id[ID_MAX];
	snprintf(sync_id, sizeof sync_id, "sync-%u", it);
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = sync_id;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "Health: %s", r->message);
	kms__response__free_unpacked(r, NULL);
	uint64_t records = log_bin_records_with(sync_id);
	audit_cp cp;
	audit_wait_checkpoint(&H, records, SYNC_WAIT_MS, &cp);

	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, g_vkey, g_prev_note, &e);
	CHECK(!g_prev_note || e.report.since_checked, "the earlier checkpoint was not checked");
	if (before_kill) {
		tlog_verify_report report;
		CHECK(tlog_verify_dir(pub, g_vkey, before_kill, NULL, NULL, &report) == KMS_OK,
		      "the checkpoint published before kill %u: %s", it, report.failure);
		CHECK(report.since_checked, "the checkpoint before kill %u was not checked", it);
	}
	id_ref *refs = malloc((e.n + 1) * sizeof *refs);
	CHECK(refs, "out of memory");
	for (uint64_t i = 0; i < e.n; i++)
		refs[i] = (id_ref){ audit_str(e.items[i], "request_id"),
			            audit_str(e.items[i], "phase"), e.items[i] };
	qsort(refs, e.n, sizeof *refs, id_ref_cmp);
	CHECK(count_ref(refs, e.n, sync_id, "", &(json_t *){ NULL }) == 1,
	      "the sync request is not in the log");
	for (size_t i = 0; i < g.answers.n; i++) {
		const answered *a = AT(g.answers, answered, i);
		json_t *entry, *intent;
		size_t plain = count_ref(refs, e.n, a->id, "", &entry);
		if (a->change) {
			size_t outcomes = count_ref(refs, e.n, a->id, "outcome", &entry);
			size_t intents = count_ref(refs, e.n, a->id, "intent", &intent);
			CHECK(plain + outcomes == 1, "change %s was answered (%s) but is in the log %zu "
			      "times", a->id, status_name(a->status), plain + outcomes);
			if (a->status == KMS__STATUS__OK)
				CHECK(intents == 1 && outcomes == 1, "change %s was answered OK: %zu "
				      "intents and %zu outcomes in the log", a->id, intents, outcomes);
			g.changes_total++;
		} else {
			CHECK(plain == 1, "request %s was answered (%s) but is in the log %zu times",
			      a->id, status_name(a->status), plain);
		}
		CHECK(!strcmp(audit_str(entry, "status"), status_name(a->status)),
		      "request %s was answered %s, its entry says %s", a->id, status_name(a->status),
		      audit_str(entry, "status"));
	}
	g.answered_total += g.answers.n;
	g.answers.n = 0;
	free(refs);
	audit_entries_free(&e);
	free(g_prev_note);
	g_prev_note = strdup(cp.note);
	audit_cp_free(&cp);
}

static void check_all(unsigned it, const char *before_kill)
{
	check_keys();
	check_grants();
	check_consents();
	check_blobs();
	check_keks();
	check_audit(it, before_kill);
	/* On PostgreSQL each change commits once besides its intent, so its
	 * outcome entry rides that commit (docs/scale-out.md, "A change and its
	 * entry commit together"); kmsd says when one did not. */
	CHECK(!harness_log_contains(&H, "a second transaction changed rows"),
	      "a change wrote rows after the transaction its outcome entry committed with");
}

/* ---- setup ---- */

static void setup_keys(void)
{
	for (int i = 0; i < DATA_KEYS; i++) {
		CHECK(harness_create_key(&H, NULL, g.keys[i].id), "CreateKey");
		Kms__Response *r = e2e_describe(&H, g.keys[i].id);
		CHECK(r && r->status == KMS__STATUS__OK, "DescribeKey");
		g.keys[i].primary = r->describe_key->key_metadata->primary_version;
		kms__response__free_unpacked(r, NULL);
	}
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = "crash-mixed dp";
	ck.per_data_principal = true;
	ck.key_spec = KMS__KEY_SPEC__AES_256;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "CreateKey per_data_principal: %s", r->message);
	snprintf(g.dp_key, sizeof g.dp_key, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);

	ck.per_data_principal = false;
	ck.key_spec = KMS__KEY_SPEC__HMAC_SHA256;
	ck.key_usage = KMS__KEY_USAGE__GENERATE_VERIFY_MAC;
	r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "CreateKey HMAC: %s", r->message);
	snprintf(g.hmac_key, sizeof g.hmac_key, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);

	consent_signer_make(&g.cm, "crash-cm-1");
	Kms__AddConsentManagerRequest a = KMS__ADD_CONSENT_MANAGER_REQUEST__INIT;
	Kms__Request areq = KMS__REQUEST__INIT;
	a.id = "crash-cm";
	a.jwk = g.cm.public_jwk;
	a.dp_key_id = g.hmac_key;
	areq.op_case = KMS__REQUEST__OP_ADD_CONSENT_MANAGER;
	areq.add_consent_manager = &a;
	r = call(&areq);
	CHECK(r->status == KMS__STATUS__OK, "AddConsentManager: %s", r->message);
	kms__response__free_unpacked(r, NULL);
}

static unsigned env_unsigned(const char *name, unsigned fallback)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return fallback;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	CHECK(!*end, "%s=%s is not a number", name, v);
	return (unsigned)n;
}

static char *published_checkpoint(void)
{
	char pub[700], path[800];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	snprintf(path, sizeof path, "%s/checkpoint", pub);
	return harness_read_file(path, NULL);
}

/* One iteration's load, ended by SIGKILL. */
static void load_and_kill(unsigned it, unsigned seed, uint64_t *master)
{
	atomic_bool killing = false;
	client clients[THREADS];
	pthread_t threads[THREADS];
	size_t answers_before = g.answers.n;
	for (unsigned t = 0; t < THREADS; t++) {
		clients[t] = (client){ .index = t, .iteration = it, .killing = &killing,
			               .rng = (*master ^ ((uint64_t)it << 20) ^ (t + 1)) | 1 };
		CHECK(pthread_create(&threads[t], NULL, client_main, &clients[t]) == 0,
		      "pthread_create");
	}
	int delay = KILL_DELAY_MIN_MS +
	            (int)(next_rand(master) % (KILL_DELAY_MAX_MS - KILL_DELAY_MIN_MS + 1));
	uint64_t wait_until = e2e_now_ms() + LOAD_START_MS;
	for (;;) {
		pthread_mutex_lock(&g.lock);
		bool started = g.answers.n > answers_before;
		pthread_mutex_unlock(&g.lock);
		if (started || e2e_now_ms() > wait_until)
			break;
		e2e_sleep_ms(1);
	}
	e2e_sleep_ms(delay);
	atomic_store(&killing, true);
	harness_kill9(&H);
	unsigned in_flight = 0;
	for (unsigned t = 0; t < THREADS; t++) {
		pthread_join(threads[t], NULL);
		CHECK(!clients[t].failure[0], "iteration %u (KMS_CRASH_SEED=%u): %s", it, seed,
		      clients[t].failure);
		in_flight += clients[t].in_flight;
	}
	CHECK(g.answers.n > answers_before, "iteration %u (KMS_CRASH_SEED=%u): nothing was "
	      "answered before the kill (%d ms)", it, seed, delay);
	g.in_flight_at_kill += in_flight;
	g.kills_mid_request += in_flight > 0;
}

static void crash_under_mixed_load(void **state)
{
	(void)state;
	unsigned seed;
	if (getenv("KMS_CRASH_SEED"))
		seed = env_unsigned("KMS_CRASH_SEED", 0);
	else if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		seed = (unsigned)time(NULL);
	unsigned iterations = env_unsigned("KMS_CRASH_ITERATIONS", ITERATIONS_DEFAULT);
	CHECK(iterations >= 1 && iterations <= ITERATIONS_MAX, "KMS_CRASH_ITERATIONS: 1..%d",
	      ITERATIONS_MAX);
	fprintf(stderr, "crash_under_mixed_load: KMS_CRASH_SEED=%u KMS_CRASH_ITERATIONS=%u\n",
	        seed, iterations);
	uint64_t master = 0x9e3779b97f4a7c15ull ^ seed;

	harness_options o = { .extra_config = CONFIG };
	CHECK(harness_add_principal(&H, &o, GRANTEE, PRINCIPAL_ROLE_APP), "principal %s",
	      GRANTEE);
	CHECK(harness_start(&H, &o), "kmsd did not start; see %s", H.log);
	setup_keys();
	audit_cp first;
	audit_get_checkpoint(&H, &first);
	snprintf(g_vkey, sizeof g_vkey, "%s", first.vkey);
	audit_cp_free(&first);

	uint64_t began = e2e_now_ms();
	for (unsigned it = 0; it < iterations; it++) {
		uint64_t t0 = e2e_now_ms();
		load_and_kill(it, seed, &master);
		char *before = published_checkpoint();
		CHECK(harness_start(&H, &o), "iteration %u (KMS_CRASH_SEED=%u): kmsd did not "
		      "start after the kill; see %s", it, seed, H.log);
		check_all(it, before);
		free(before);
		fprintf(stderr, "iteration %u: %llu ms, %llu answered so far, %zu blobs kept\n", it,
		        (unsigned long long)(e2e_now_ms() - t0),
		        (unsigned long long)g.answered_total, g.sealed.n);
	}
	uint64_t took = e2e_now_ms() - began;
	int code = harness_stop(&H);
	CHECK(code == 0, "kmsd exit code %d after SIGTERM; see %s", code, H.log);
	fprintf(stderr,
	        "crash_under_mixed_load: %u iterations in %llu ms (%llu ms each), %llu answers "
	        "checked in the log (%llu changes), %zu keys created, %zu grants, %zu consents, "
	        "%zu data principals, %u KEK rotations, %llu blob decrypts checked, %u kills "
	        "landed with requests in flight (%llu requests), nothing lost\n",
	        iterations, (unsigned long long)took, (unsigned long long)(took / iterations),
	        (unsigned long long)g.answered_total, (unsigned long long)g.changes_total,
	        g.created.n, g.grants.n, g.consents.n, g.dps.n, g.kek_rotations,
	        (unsigned long long)g.blobs_checked, g.kills_mid_request,
	        (unsigned long long)g.in_flight_at_kill);
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	for (size_t i = 0; i < g.sealed.n; i++)
		free(AT(g.sealed, sealed, i)->blob);
	free(g.sealed.items);
	free(g.created.items);
	free(g.grants.items);
	free(g.consents.items);
	free(g.dps.items);
	free(g.answers.items);
	free(g_prev_note);
	consent_signer_free(&g.cm);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(crash_under_mixed_load, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
