/*
 * test_data_principals: per-data-principal keys and crypto-shredding
 * against a real kmsd on a real SoftHSM token (docs/data-principals.md,
 * docs/key-hierarchy.md "Data principals' sub-keys").
 *
 *  1. erase_and_hold: a key created --per-data-principal refuses a use
 *     without a pseudonym in `dp`; blobs for principals X and Y decrypt; a
 *     held X cannot be erased (FAILED_PRECONDITION naming the hold) and
 *     can once the hold is lifted; then X's blobs and any new seal for X
 *     fail with "was erased on", also after a restart, while Y's blobs
 *     still decrypt. The erasure and the holds are audited with
 *     data_principal, basis and hold.
 *     A copy of kms.db taken before the erasure (kmsd stopped, the file
 *     copied): a kmsd started on the copy with the same token decrypts X's
 *     and Y's old blobs (KEK 1, which wraps them there, is still on the
 *     token); after a KEK rotation on the live store has finished (KEK 1
 *     retired, its token object destroyed), a kmsd on the copy decrypts
 *     neither: every sub-key in the copy is wrapped under KEK 1.
 *  2. retention: a key's retention for purpose 101 of 3 days; the test
 *     moves the retention tick's clock (a test-only file kmsd reads):
 *     nothing is due before; a day later (2 days before the end) the
 *     sub-key is noticed (pre_erasure) and listed by ListDueErasures, and
 *     stays listed while the clock stands still; held, then lifted past
 *     its end, it is noticed again rather than erased at once; the clock
 *     stepped back ten minutes, noticed again at the new time; 48 h after
 *     that notice it is erased (retention_erasure) and its blobs fail. Both entries are in the verified audit log, principal kmsd,
 *     with key_id, data_principal, purpose and basis "retention".
 *  3. per_version: gcm_max_encryptions = 5; 15 seals for X rotate the key
 *     (no version seals more than 5); every blob opens; the store (kmsd
 *     stopped) holds one sub-key of X per version used, each its own row,
 *     so each AES sub-key seals at most 5 blobs. Erasing X kills every
 *     version's blobs and any new seal, while Y's blob still opens; the
 *     store shows every X row erased, without material.
 * Every wait polls for the event, bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kms/store/store.h"
#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define WAIT_MS 60000
#define POLL_MS 100

#define X_DP "kp_0000abcd_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define Y_DP "kp_0000abcd_1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define Z_DP "kp_0000abcd_1_cccccccccccccccccccccccccccccccc"
#define STATUTE "Income-tax Act 1961 s.44AA"

/* A day is 4 s; the background task every second. */
static const char *const CONFIG = "[limits]\nseconds_per_day = 4\ntick_seconds = 1\n";

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

static harness H;

static void start_with(const char *subdir, const char *config)
{
	harness_options o = { .extra_config = config, .data_subdir = subdir };
	CHECK(harness_start(&H, &o), "kmsd did not start on %s; see %s", subdir ? subdir : "data",
	      H.log);
}

static void start_on(const char *subdir)
{
	start_with(subdir, CONFIG);
}

/* The retention tick's clock (see retention()). */
static char clock_file[600];

static void set_clock(int64_t t)
{
	char tmp[620];
	snprintf(tmp, sizeof tmp, "%s.tmp", clock_file);
	FILE *f = fopen(tmp, "w");
	CHECK(f && fprintf(f, "%lld\n", (long long)t) > 0 && fclose(f) == 0,
	      "cannot write %s", tmp);
	CHECK(rename(tmp, clock_file) == 0, "cannot rename %s", tmp);
}

static void stop(void)
{
	int code = harness_stop(&H);
	CHECK(code == 0, "kmsd exited with %d on SIGTERM; see %s", code, H.log);
}

static Kms__Response *call(Kms__Request *req)
{
	Kms__Response *r = harness_call(&H, req);
	CHECK(r, "no reply from kmsd; see %s", H.log);
	return r;
}

/* ---- requests ---- */

static Kms__Response *create_key(bool per_dp, Kms__KeySpec spec)
{
	Kms__CreateKeyRequest c = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	c.description = "data principals";
	c.key_spec = spec;
	c.per_data_principal = per_dp;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &c;
	return call(&req);
}

static void create_dp_key(char out[E2E_KEY_ID_SIZE])
{
	Kms__Response *r = create_key(true, KMS__KEY_SPEC__AES_256);
	CHECK(r->status == KMS__STATUS__OK, "CreateKey per_data_principal: %s", r->message);
	CHECK(r->create_key->key_metadata->per_data_principal,
	      "CreateKey's metadata does not show per_data_principal");
	snprintf(out, E2E_KEY_ID_SIZE, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

/* A context of dp (NULL: none) and purpose (NULL: none). */
typedef struct ctx2 {
	Kms__StringPair pair[2], *pairs[2];
	size_t n;
} ctx2;

static void ctx_fill(ctx2 *c, const char *dp, const char *purpose)
{
	c->n = 0;
	if (dp) {
		kms__string_pair__init(&c->pair[c->n]);
		c->pair[c->n].key = "dp";
		c->pair[c->n].value = (char *)dp;
		c->pairs[c->n] = &c->pair[c->n];
		c->n++;
	}
	if (purpose) {
		kms__string_pair__init(&c->pair[c->n]);
		c->pair[c->n].key = "purpose";
		c->pair[c->n].value = (char *)purpose;
		c->pairs[c->n] = &c->pair[c->n];
		c->n++;
	}
}

static Kms__Response *encrypt(const char *key, const char *dp, const char *purpose)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ctx2 c;
	ctx_fill(&c, dp, purpose);
	e.key_id = (char *)key;
	e.plaintext.data = (uint8_t *)dp;
	e.plaintext.len = dp ? strlen(dp) : 1;
	if (!dp)
		e.plaintext.data = (uint8_t *)"x";
	e.encryption_context = c.pairs;
	e.n_encryption_context = c.n;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return call(&req);
}

typedef struct blob {
	uint8_t *data;
	size_t len;
} blob;

static void seal(const char *key, const char *dp, const char *purpose, blob *out)
{
	Kms__Response *r = encrypt(key, dp, purpose);
	CHECK(r->status == KMS__STATUS__OK, "Encrypt for %s: %s", dp, r->message);
	out->len = r->encrypt->ciphertext_blob.len;
	out->data = malloc(out->len);
	CHECK(out->data, "out of memory");
	memcpy(out->data, r->encrypt->ciphertext_blob.data, out->len);
	kms__response__free_unpacked(r, NULL);
}

static Kms__Response *decrypt(const blob *b, const char *dp, const char *purpose)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ctx2 c;
	ctx_fill(&c, dp, purpose);
	d.ciphertext_blob.data = b->data;
	d.ciphertext_blob.len = b->len;
	d.encryption_context = c.pairs;
	d.n_encryption_context = c.n;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	return call(&req);
}

/* Decrypt must give back dp's own text (what seal sealed). */
static void opens(const blob *b, const char *dp, const char *purpose, const char *where)
{
	Kms__Response *r = decrypt(b, dp, purpose);
	CHECK(r->status == KMS__STATUS__OK, "%s: decrypt for %s: status %d: %s", where, dp,
	      r->status, r->message);
	CHECK(r->decrypt->plaintext.len == strlen(dp) &&
	              !memcmp(r->decrypt->plaintext.data, dp, strlen(dp)),
	      "%s: decrypt for %s gave another plaintext", where, dp);
	kms__response__free_unpacked(r, NULL);
}

/* Decrypt must fail with want (and, when given, a message containing
 * needle). */
static void refused(const blob *b, const char *dp, const char *purpose, Kms__Status want,
                    const char *needle, const char *where)
{
	Kms__Response *r = decrypt(b, dp, purpose);
	CHECK(r->status == want, "%s: decrypt for %s: status %d (%s), want %d", where, dp,
	      r->status, r->message, want);
	CHECK(!needle || strstr(r->message, needle), "%s: decrypt for %s: \"%s\" lacks \"%s\"",
	      where, dp, r->message, needle);
	CHECK(!strchr(r->message, '\n'), "%s: a message of more than one line", where);
	kms__response__free_unpacked(r, NULL);
}

static Kms__Response *erase(const char *key, const char *dp, const char *basis)
{
	Kms__EraseDataPrincipalRequest e = KMS__ERASE_DATA_PRINCIPAL_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = (char *)key;
	e.data_principal = (char *)dp;
	e.basis = (char *)basis;
	req.op_case = KMS__REQUEST__OP_ERASE_DATA_PRINCIPAL;
	req.erase_data_principal = &e;
	return call(&req);
}

static void hold(const char *key, const char *dp, const char *statute)
{
	Kms__SetDataPrincipalHoldRequest h = KMS__SET_DATA_PRINCIPAL_HOLD_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	h.key_id = (char *)key;
	h.data_principal = (char *)dp;
	h.hold = (char *)statute;
	req.op_case = KMS__REQUEST__OP_SET_DATA_PRINCIPAL_HOLD;
	req.set_data_principal_hold = &h;
	Kms__Response *r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "hold \"%s\" on %s: %s", statute, dp, r->message);
	kms__response__free_unpacked(r, NULL);
}

static void set_retention(const char *key, const char *purpose, uint32_t days)
{
	Kms__SetRetentionRequest s = KMS__SET_RETENTION_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	s.key_id = (char *)key;
	s.purpose = (char *)purpose;
	s.days = days;
	req.op_case = KMS__REQUEST__OP_SET_RETENTION;
	req.set_retention = &s;
	Kms__Response *r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "SetRetention: %s", r->message);
	kms__response__free_unpacked(r, NULL);
}

/* dp's notice_at as ListDueErasures lists it under key; 0: not listed. */
static int64_t due_notice(const char *key, const char *dp)
{
	Kms__ListDueErasuresRequest l = KMS__LIST_DUE_ERASURES_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_LIST_DUE_ERASURES;
	req.list_due_erasures = &l;
	Kms__Response *r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "ListDueErasures: %s", r->message);
	int64_t found = 0;
	for (size_t i = 0; i < r->list_due_erasures->n_erasures; i++) {
		const Kms__DueErasure *d = r->list_due_erasures->erasures[i];
		if (!strcmp(d->key_id, key) && !strcmp(d->data_principal, dp)) {
			CHECK(!strcmp(d->purpose, "101") && d->notice_at > 0 &&
			              d->erase_at >= d->retention_ends_at,
			      "ListDueErasures: purpose %s, notice %lld, erase at %lld, ends %lld",
			      d->purpose, (long long)d->notice_at, (long long)d->erase_at,
			      (long long)d->retention_ends_at);
			CHECK(!found, "ListDueErasures lists %s twice under one key", dp);
			found = d->notice_at;
		}
	}
	kms__response__free_unpacked(r, NULL);
	return found;
}

static bool due_lists(const char *key, const char *dp)
{
	return due_notice(key, dp) != 0;
}

static void rotate_kek_and_wait_retired(uint32_t old_id)
{
	Kms__RotateKekRequest rk = KMS__ROTATE_KEK_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ROTATE_KEK;
	req.rotate_kek = &rk;
	Kms__Response *r = call(&req);
	CHECK(r->status == KMS__STATUS__OK, "RotateKek: %s", r->message);
	kms__response__free_unpacked(r, NULL);
	uint64_t until = e2e_now_ms() + WAIT_MS;
	for (;;) {
		Kms__ListKeksRequest l = KMS__LIST_KEKS_REQUEST__INIT;
		Kms__Request lr = KMS__REQUEST__INIT;
		lr.op_case = KMS__REQUEST__OP_LIST_KEKS;
		lr.list_keks = &l;
		r = call(&lr);
		CHECK(r->status == KMS__STATUS__OK, "ListKeks: %s", r->message);
		bool retired = false;
		for (size_t i = 0; i < r->list_keks->n_keks; i++)
			if (r->list_keks->keks[i]->id == old_id)
				retired = r->list_keks->keks[i]->state == KMS__KEK_STATE__KEK_RETIRED;
		kms__response__free_unpacked(r, NULL);
		if (retired)
			return;
		CHECK(e2e_now_ms() < until, "KEK %u not retired within %d ms", old_id, WAIT_MS);
		e2e_sleep_ms(POLL_MS);
	}
}

/* ---- files ---- */

static void copy_file(const char *from, const char *to)
{
	size_t len = 0;
	char *bytes = harness_read_file(from, &len);
	if (!bytes && errno == ENOENT)
		return; /* no WAL: nothing to copy */
	CHECK(bytes, "cannot read %s", from);
	FILE *f = fopen(to, "wb");
	CHECK(f && fwrite(bytes, 1, len, f) == len && fclose(f) == 0, "cannot write %s", to);
	chmod(to, 0600);
	free(bytes);
}

/* kms.db (and its WAL) of the stopped live store into subdir. */
static void copy_store(const char *subdir)
{
	char dir[700], from[800], to[800];
	snprintf(dir, sizeof dir, "%s/%s", H.dir, subdir);
	CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST, "mkdir %s", dir);
	static const char *const files[] = { "kms.db", "kms.db-wal" };
	for (size_t i = 0; i < 2; i++) {
		snprintf(from, sizeof from, "%s/data/%s", H.dir, files[i]);
		snprintf(to, sizeof to, "%s/%s", dir, files[i]);
		errno = 0;
		copy_file(from, to);
	}
}

/* ---- the audit log ---- */

static void load_audit(const char *subdir, audit_entries *e)
{
	char vkey[AUDIT_VKEY_MAX], pub[800];
	CHECK(audit_vkey_from_log(&H, vkey), "no verifier key in %s", H.log);
	audit_public_dir(&H, subdir, pub, sizeof pub);
	audit_load(pub, vkey, NULL, e);
}

/* The first entry of operation op naming dp (and, when phase is given,
 * that phase), or NULL. */
static json_t *find_entry(const audit_entries *e, const char *op, const char *dp,
                          const char *phase)
{
	for (uint64_t i = 0; i < e->n; i++) {
		json_t *x = e->items[i];
		if (!strcmp(audit_str(x, "operation"), op) &&
		    !strcmp(audit_str(x, "data_principal"), dp) &&
		    (!phase || !strcmp(audit_str(x, "phase"), phase)))
			return x;
	}
	return NULL;
}

/* ---- the tests ---- */

static void erase_and_hold(void **state)
{
	(void)state;
	char k[E2E_KEY_ID_SIZE];
	blob bx, by, bx2;

	start_on(NULL);
	/* Only AES_256 wrapped keys keep a key per data principal. */
	Kms__Response *r = create_key(true, KMS__KEY_SPEC__HMAC_SHA256);
	CHECK(r->status == KMS__STATUS__INVALID_ARGUMENT && strstr(r->message, "AES_256"),
	      "CreateKey HMAC per_data_principal: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	create_dp_key(k);

	/* No dp, or a dp that is not a pseudonym: refused, saying what to do. */
	r = encrypt(k, NULL, NULL);
	CHECK(r->status == KMS__STATUS__INVALID_ARGUMENT && strstr(r->message, "pseudonym"),
	      "Encrypt without dp: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	r = encrypt(k, "alice@example.com", NULL);
	CHECK(r->status == KMS__STATUS__INVALID_ARGUMENT && strstr(r->message, "pseudonymize"),
	      "Encrypt with a raw identifier: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);

	seal(k, X_DP, NULL, &bx);
	seal(k, Y_DP, NULL, &by);
	opens(&bx, X_DP, NULL, "live");
	opens(&by, Y_DP, NULL, "live");
	/* X's blob under Y's sub-key does not authenticate. */
	refused(&bx, Y_DP, NULL, KMS__STATUS__INVALID_CIPHERTEXT, NULL, "X's blob as Y");

	/* Held: erasure refused, naming the hold; lifted: allowed. */
	hold(k, X_DP, STATUTE);
	r = erase(k, X_DP, "DPDP s.12(3) request 42");
	CHECK(r->status == KMS__STATUS__FAILED_PRECONDITION && strstr(r->message, STATUTE),
	      "erase while held: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	opens(&bx, X_DP, NULL, "held");
	hold(k, X_DP, "");

	/* The copy of the store, taken before the erasure. */
	stop();
	copy_store("copy");
	start_on(NULL);

	r = erase(k, X_DP, "DPDP s.12(3) request 42");
	CHECK(r->status == KMS__STATUS__OK, "erase X: %s", r->message);
	CHECK(r->erase_data_principal->erased_at > 0, "erase X: no erased_at");
	kms__response__free_unpacked(r, NULL);
	refused(&bx, X_DP, NULL, KMS__STATUS__FAILED_PRECONDITION, "was erased on", "erased");
	r = encrypt(k, X_DP, NULL);
	CHECK(r->status == KMS__STATUS__FAILED_PRECONDITION && strstr(r->message, "was erased on"),
	      "Encrypt for erased X: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	opens(&by, Y_DP, NULL, "Y after X's erasure");
	/* Erased is final: a second erasure says so; a hold is refused. */
	r = erase(k, X_DP, "again");
	CHECK(r->status == KMS__STATUS__FAILED_PRECONDITION && strstr(r->message, "already"),
	      "second erase: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);

	stop();
	start_on(NULL);
	refused(&bx, X_DP, NULL, KMS__STATUS__FAILED_PRECONDITION, "was erased on",
	        "erased, after a restart");
	opens(&by, Y_DP, NULL, "Y after a restart");
	seal(k, Y_DP, NULL, &bx2); /* Y still seals */
	free(bx2.data);

	/* The copy from before the erasure, KEK 1 still on the token: X's and
	 * Y's old blobs decrypt from it. */
	stop();
	start_on("copy");
	opens(&bx, X_DP, NULL, "copy before the KEK rotation");
	opens(&by, Y_DP, NULL, "copy before the KEK rotation");
	stop();

	/* The live store's KEK rotation runs to its end: KEK 1 retired and its
	 * token object destroyed. */
	start_on(NULL);
	rotate_kek_and_wait_retired(1);
	opens(&by, Y_DP, NULL, "live after the KEK rotation");
	stop();

	/* The copy now decrypts neither: its sub-keys are wrapped under KEK 1,
	 * which no longer exists. */
	start_on("copy");
	r = decrypt(&bx, X_DP, NULL);
	CHECK(r->status != KMS__STATUS__OK, "copy after the KEK rotation decrypted X's blob");
	CHECK(strstr(r->message, "cannot be unwrapped") || strstr(r->message, "kms-kek-00000001"),
	      "copy after the KEK rotation: X: %s", r->message);
	kms__response__free_unpacked(r, NULL);
	r = decrypt(&by, Y_DP, NULL);
	CHECK(r->status != KMS__STATUS__OK, "copy after the KEK rotation decrypted Y's blob");
	kms__response__free_unpacked(r, NULL);
	stop();

	/* The audit log of the live store: the holds and the erasure. */
	start_on(NULL);
	stop();
	audit_entries e;
	load_audit(NULL, &e);
	json_t *x = find_entry(&e, "erase_data_principal", X_DP, "outcome");
	CHECK(x && !strcmp(audit_str(x, "basis"), "DPDP s.12(3) request 42") &&
	              !strcmp(audit_str(x, "key_id"), k),
	      "no erase_data_principal outcome entry for X with its basis and key");
	x = find_entry(&e, "set_data_principal_hold", X_DP, "outcome");
	CHECK(x && !strcmp(audit_str(x, "hold"), STATUTE), "no hold entry for X with its statute");
	audit_entries_free(&e);
	free(bx.data);
	free(by.data);
}

static void retention(void **state)
{
	(void)state;
	char k[E2E_KEY_ID_SIZE];
	blob bz;

	/* Real days; the retention tick reads its clock from clock_file once
	 * the test writes it (until then, the real clock). */
	snprintf(clock_file, sizeof clock_file, "%s/retention-clock", getenv("KMS_TEST_TOKEN_DIR"));
	unlink(clock_file);
	char config[800];
	snprintf(config, sizeof config, "[limits]\ntick_seconds = 1\nretention_clock_file = %s\n",
	         clock_file);
	start_with(NULL, config);
	create_dp_key(k);
	set_retention(k, "101", 3);
	seal(k, Z_DP, "101", &bz);
	int64_t made = (int64_t)time(NULL); /* at or after the sub-key's creation */
	opens(&bz, Z_DP, "101", "before retention ends");
	CHECK(!due_lists(k, Z_DP), "Z listed as due at once");

	/* A day and a minute later: 2 days before the end, the notice; listed
	 * as due once it is audited, and still listed while the clock stands. */
	set_clock(made + 86400 + 60);
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (!due_lists(k, Z_DP)) {
		CHECK(e2e_now_ms() < until, "Z not listed as due within %d ms", WAIT_MS);
		e2e_sleep_ms(POLL_MS);
	}
	opens(&bz, Z_DP, "101", "once noticed, before its end");
	CHECK(due_lists(k, Z_DP), "Z no longer listed as due while the clock stood still");
	/* A hold placed, the clock moved five days on (past its end, 48 h
	 * after the first notice), the hold lifted: not erased at once, but
	 * noticed again, its 48 h counted from then. */
	hold(k, Z_DP, STATUTE);
	CHECK(!due_lists(k, Z_DP), "Z listed as due while held");
	set_clock(made + 5 * 86400);
	hold(k, Z_DP, "");
	while (due_notice(k, Z_DP) < made + 5 * 86400) {
		CHECK(e2e_now_ms() < until, "Z not noticed again within %d ms", WAIT_MS);
		e2e_sleep_ms(POLL_MS);
	}
	opens(&bz, Z_DP, "101", "noticed again after the hold, its 48 h not over");
	/* The clock stepped back ten minutes: the notice, now dated in the
	 * future, is given again at the new now. */
	set_clock(made + 5 * 86400 - 600);
	while (due_notice(k, Z_DP) != made + 5 * 86400 - 600) {
		CHECK(e2e_now_ms() < until, "Z not noticed again after the clock went back");
		e2e_sleep_ms(POLL_MS);
	}
	opens(&bz, Z_DP, "101", "noticed again after the clock went back");
	/* Seven days on: 48 h after the new notice: erased by kmsd, gone from
	 * the due list. */
	set_clock(made + 7 * 86400 + 60);
	for (;;) {
		/* A decrypt racing the erasure (its sub-key looked up just before
		 * the tick erased it) is refused too, in other words: any
		 * FAILED_PRECONDITION that says "erased" ends the wait. */
		Kms__Response *r = decrypt(&bz, Z_DP, "101");
		bool erased = r->status == KMS__STATUS__FAILED_PRECONDITION &&
		              strstr(r->message, "erased");
		CHECK(erased || r->status == KMS__STATUS__OK, "decrypt Z: status %d: %s", r->status,
		      r->message);
		kms__response__free_unpacked(r, NULL);
		if (erased)
			break;
		CHECK(e2e_now_ms() < until, "Z not erased within %d ms", WAIT_MS);
		e2e_sleep_ms(POLL_MS);
	}
	/* Once erased, every use says when and why. */
	Kms__Response *r = decrypt(&bz, Z_DP, "101");
	CHECK(r->status == KMS__STATUS__FAILED_PRECONDITION && strstr(r->message, "was erased on") &&
	              strstr(r->message, "retention"),
	      "decrypt Z after its erasure: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	CHECK(!due_lists(k, Z_DP), "Z still listed as due after its erasure");
	stop();

	audit_entries e;
	load_audit(NULL, &e);
	json_t *pre = find_entry(&e, "pre_erasure", Z_DP, NULL);
	json_t *end = find_entry(&e, "retention_erasure", Z_DP, NULL);
	CHECK(pre && end, "audit: pre_erasure %s, retention_erasure %s", pre ? "found" : "missing",
	      end ? "found" : "missing");
	json_t *entries[2] = { pre, end };
	for (int i = 0; i < 2; i++) {
		json_t *c = json_object_get(entries[i], "encryption_context");
		CHECK(!strcmp(audit_str(entries[i], "principal"), "kmsd") &&
		              !strcmp(audit_str(entries[i], "key_id"), k) &&
		              !strcmp(audit_str(entries[i], "basis"), "retention") &&
		              !strcmp(audit_str(c, "purpose"), "101") &&
		              !strcmp(audit_str(entries[i], "status"), "OK"),
		      "audit: %s entry does not name kmsd, the key, purpose 101 and basis retention",
		      audit_str(entries[i], "operation"));
	}
	size_t i_pre = 0, i_end = 0;
	for (uint64_t i = 0; i < e.n; i++) {
		if (e.items[i] == pre)
			i_pre = (size_t)i;
		if (e.items[i] == end)
			i_end = (size_t)i;
	}
	CHECK(i_pre < i_end, "audit: pre_erasure is not before retention_erasure");
	audit_entries_free(&e);
	free(bz.data);
}

/* ---- per version ---- */

#define PV_SEALS 15
#define PV_BOUND 5

static store *store_open_stopped(void)
{
	char data[700];
	snprintf(data, sizeof data, "%s/data", H.dir);
	store *st = NULL;
	bool created = false;
	kms_status opened = KMS_FAILED_PRECONDITION;
	/* A kmsd that just stopped may hold the lock for a moment: bounded. */
	for (int i = 0; i < 100 && opened == KMS_FAILED_PRECONDITION; i++) {
		opened = store_open(data, &st, &created);
		if (opened == KMS_FAILED_PRECONDITION)
			e2e_sleep_ms(100);
	}
	CHECK(opened == KMS_OK, "cannot open the store in %s", data);
	return st;
}

/* X's rows under key: how many, each version's state into states[v]. */
static size_t dp_rows(const char *key, const char *dp, dp_key_state states[PV_SEALS + 2])
{
	store *st = store_open_stopped();
	int64_t ids[32];
	uint32_t versions[32];
	size_t n = 0;
	kms_status got = store_dp_keys_of_dp(st, key, dp, 0, 32, ids, versions, &n);
	memset(states, 0, (PV_SEALS + 2) * sizeof *states);
	for (size_t i = 0; got == KMS_OK && i < n; i++) {
		store_dp_key row;
		got = store_dp_key_get(st, key, dp, versions[i], &row);
		CHECK(got != KMS_OK || row.id == ids[i], "row of v%u is not sub-key %lld",
		      versions[i], (long long)ids[i]);
		if (got == KMS_OK && versions[i] <= PV_SEALS + 1)
			states[versions[i]] = row.state;
	}
	store_close(st);
	CHECK(got == KMS_OK, "cannot read the sub-keys of %s", dp);
	return n;
}

static void per_version(void **state)
{
	(void)state;
	char k[E2E_KEY_ID_SIZE];
	blob bx[PV_SEALS], by;
	uint32_t version[PV_SEALS], uses[PV_SEALS + 2] = { 0 }, max_version = 0;

	start_with(NULL, "[limits]\ngcm_max_encryptions = 5\ngcm_reserve_block = 2\n");
	create_dp_key(k);
	for (size_t i = 0; i < PV_SEALS; i++) {
		Kms__Response *r = encrypt(k, X_DP, NULL);
		CHECK(r->status == KMS__STATUS__OK, "Encrypt #%zu for X: %s", i + 1, r->message);
		version[i] = r->encrypt->key_version;
		CHECK(version[i] >= 1 && version[i] <= PV_SEALS + 1, "Encrypt #%zu: version %u",
		      i + 1, version[i]);
		bx[i].len = r->encrypt->ciphertext_blob.len;
		bx[i].data = malloc(bx[i].len);
		CHECK(bx[i].data, "out of memory");
		memcpy(bx[i].data, r->encrypt->ciphertext_blob.data, bx[i].len);
		kms__response__free_unpacked(r, NULL);
		uses[version[i]]++;
		if (version[i] > max_version)
			max_version = version[i];
	}
	seal(k, Y_DP, NULL, &by);
	size_t used = 0;
	for (uint32_t v = 1; v <= max_version; v++) {
		CHECK(uses[v] <= PV_BOUND, "version %u sealed %u blobs, bound %d", v, uses[v],
		      PV_BOUND);
		used += uses[v] > 0;
	}
	CHECK(used >= 3, "15 seals under a bound of 5 used %zu versions", used);
	for (size_t i = 0; i < PV_SEALS; i++)
		opens(&bx[i], X_DP, NULL, "each version's blob");
	stop();

	/* One sub-key per version used: each sealed at most the bound. */
	dp_key_state states[PV_SEALS + 2];
	size_t rows = dp_rows(k, X_DP, states);
	CHECK(rows == used, "X has %zu sub-keys for %zu versions used", rows, used);
	for (uint32_t v = 1; v <= max_version; v++)
		CHECK(!uses[v] || states[v] == DP_KEY_ACTIVE, "no active sub-key of X for v%u", v);

	/* Erasure kills every version's blobs and any new seal. */
	start_with(NULL, "[limits]\ngcm_max_encryptions = 5\ngcm_reserve_block = 2\n");
	Kms__Response *r = erase(k, X_DP, "DPDP s.12(3) request 43");
	CHECK(r->status == KMS__STATUS__OK, "erase X: %s", r->message);
	kms__response__free_unpacked(r, NULL);
	for (size_t i = 0; i < PV_SEALS; i++)
		refused(&bx[i], X_DP, NULL, KMS__STATUS__FAILED_PRECONDITION, "was erased on",
		        "a version's blob after the erasure");
	r = encrypt(k, X_DP, NULL);
	CHECK(r->status == KMS__STATUS__FAILED_PRECONDITION && strstr(r->message, "was erased on"),
	      "Encrypt for erased X: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	opens(&by, Y_DP, NULL, "Y after X's erasure");
	stop();
	rows = dp_rows(k, X_DP, states);
	CHECK(rows == used, "X has %zu rows after its erasure, want %zu", rows, used);
	for (uint32_t v = 1; v <= max_version; v++)
		CHECK(!uses[v] || states[v] == DP_KEY_ERASED, "X's sub-key of v%u is not erased", v);
	for (size_t i = 0; i < PV_SEALS; i++)
		free(bx[i].data);
	free(by.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(erase_and_hold),
		cmocka_unit_test(retention),
		cmocka_unit_test(per_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
