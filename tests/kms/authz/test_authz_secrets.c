/*
 * test_authz_secrets: access key secrets wrapped in a real SoftHSM token
 * (kms/authz/authz_secrets.h) and kept by the real store. The wrapping key
 * is found or created (and only looked at by the read-only call), survives
 * the keyring's start-up reconciliation, a secret round-trips, a wrapped
 * secret moved to another access key id or principal does not unwrap, and
 * no form of a secret reaches the SQLite files (-wal and -shm included) or
 * the log.
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
#include <unistd.h>

#include <kms/secmem.h>

#include "common/base64.h"
#include "kms/authz/authz_secrets.h"
#include "kms/store/store.h"
#include "tests/support/keyring_test.h"

static hsm *h;

static int group_setup(void **state)
{
	(void)state;
	h = t_hsm_open();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hsm_close(h);
	return 0;
}

static hsm_object_id wrap_key(void)
{
	hsm_object_id id = { .len = strlen(AUTHZ_WRAP_KEY_ID) };
	memcpy(id.bytes, AUTHZ_WRAP_KEY_ID, id.len);
	return id;
}

typedef struct ensure_run {
	bool created;
	kms_status status;
} ensure_run;

static void ensure_quietly(void *p)
{
	ensure_run *run = p;
	run->status = authz_secrets_key_ensure(h, &run->created);
}

/* Runs first: the token is fresh. */
static void test_wrap_key(void **state)
{
	(void)state;
	bool exists = true;
	assert_ok(authz_secrets_key_exists(h, &exists));
	assert_false(exists);
	/* Looking created nothing. */
	assert_ok(authz_secrets_key_exists(h, &exists));
	assert_false(exists);

	ensure_run run = { 0 };
	const char *log = t_capture_stderr(ensure_quietly, &run);
	assert_ok(run.status);
	assert_true(run.created);
	assert_non_null(strstr(log, "created the access key secret wrapping key"));
	assert_ok(authz_secrets_key_exists(h, &exists));
	assert_true(exists);
	bool created = true;
	assert_ok(authz_secrets_key_ensure(h, &created));
	assert_false(created);

	/* The keyring's reconciliation removes orphan key-version objects; the
	 * wrapping key is not one (its id is not 20 bytes). */
	keyring *kr = t_keyring_open(h, 0, 0);
	char key_id[KMS_KEYID_TEXT_SIZE];
	t_create(kr, NULL, key_id);
	keyring_close(kr);
	kr = t_keyring_open(h, 0, 0);
	keyring_close(kr);
	hsm_object_id id = wrap_key();
	assert_ok(hsm_object_exists(h, &id, &exists));
	assert_true(exists);
}

static void test_round_trip(void **state)
{
	(void)state;
	char id[AUTHZ_ID_SIZE], id2[AUTHZ_ID_SIZE];
	uint8_t *secret = NULL, *secret2 = NULL, *back = NULL;
	uint8_t wrapped[AUTHZ_WRAPPED_LEN], wrapped2[AUTHZ_WRAPPED_LEN];

	assert_ok(authz_secrets_new(h, "payments-svc", id, &secret, wrapped));
	assert_non_null(secret);
	assert_ok(authz_names_id_check("AK", id, strlen(id)));
	assert_int_equal(wrapped[0], AUTHZ_WRAPPED_FORMAT);
	/* The ciphertext is not the secret. */
	assert_memory_not_equal(wrapped + 1 + HSM_GCM_IV_LEN, secret, AUTHZ_SECRET_LEN);

	assert_ok(authz_secrets_unwrap(h, id, "payments-svc", wrapped, sizeof wrapped, &back));
	assert_non_null(back);
	assert_memory_equal(back, secret, AUTHZ_SECRET_LEN);
	kms_secure_free(back);

	/* Another key: another id, another secret. */
	assert_ok(authz_secrets_new(h, "payments-svc", id2, &secret2, wrapped2));
	assert_string_not_equal(id, id2);
	assert_memory_not_equal(secret, secret2, AUTHZ_SECRET_LEN);

	/* Wrapping the same secret again uses a fresh IV. */
	uint8_t again[AUTHZ_WRAPPED_LEN];
	assert_ok(authz_secrets_wrap(h, id, "payments-svc", secret, again));
	assert_memory_not_equal(again + 1, wrapped + 1, HSM_GCM_IV_LEN);
	assert_ok(authz_secrets_unwrap(h, id, "payments-svc", again, sizeof again, &back));
	assert_memory_equal(back, secret, AUTHZ_SECRET_LEN);
	kms_secure_free(back);

	/* A grant id from the same generator. */
	char grant_id[AUTHZ_ID_SIZE];
	assert_ok(authz_secrets_grant_id(h, grant_id));
	assert_ok(authz_names_id_check("GR", grant_id, strlen(grant_id)));

	kms_secure_free(secret);
	kms_secure_free(secret2);
}

static void hex(const uint8_t *in, size_t n, char *out, bool upper)
{
	static const char lower_digits[] = "0123456789abcdef", upper_digits[] = "0123456789ABCDEF";
	const char *d = upper ? upper_digits : lower_digits;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static void test_moved_secret_fails(void **state)
{
	(void)state;
	char id[AUTHZ_ID_SIZE], other_id[AUTHZ_ID_SIZE];
	uint8_t *secret = NULL, *other = NULL, *back = (uint8_t *)1;
	uint8_t wrapped[AUTHZ_WRAPPED_LEN], other_wrapped[AUTHZ_WRAPPED_LEN];
	assert_ok(authz_secrets_new(h, "alice", id, &secret, wrapped));
	assert_ok(authz_secrets_new(h, "alice", other_id, &other, other_wrapped));
	char secret_hex[2 * AUTHZ_SECRET_LEN + 1];
	hex(secret, AUTHZ_SECRET_LEN, secret_hex, false);

	/* To another access key id of the same principal. */
	assert_status(authz_secrets_unwrap(h, other_id, "alice", wrapped, sizeof wrapped, &back),
	              KMS_INVALID_CIPHERTEXT);
	assert_null(back);
	t_assert_message("does not unwrap", other_id, NULL);
	assert_null(strstr(kms_error_message(), secret_hex));
	/* To another principal under the same id. */
	back = (uint8_t *)1;
	assert_status(authz_secrets_unwrap(h, id, "alicf", wrapped, sizeof wrapped, &back),
	              KMS_INVALID_CIPHERTEXT);
	assert_null(back);
	/* A name that is a prefix or extension of the owner's. */
	assert_status(authz_secrets_unwrap(h, id, "alic", wrapped, sizeof wrapped, &back),
	              KMS_INVALID_CIPHERTEXT);
	assert_status(authz_secrets_unwrap(h, id, "alice2", wrapped, sizeof wrapped, &back),
	              KMS_INVALID_CIPHERTEXT);

	/* Any byte changed, bit by bit over the whole wrapped form. */
	for (size_t i = 0; i < AUTHZ_WRAPPED_LEN; i++) {
		uint8_t changed[AUTHZ_WRAPPED_LEN];
		memcpy(changed, wrapped, sizeof changed);
		changed[i] ^= 0x01;
		back = (uint8_t *)1;
		assert_status(authz_secrets_unwrap(h, id, "alice", changed, sizeof changed, &back),
		              KMS_INVALID_CIPHERTEXT);
		assert_null(back);
	}
	/* Cut short, too long, no bytes. */
	uint8_t longer[AUTHZ_WRAPPED_LEN + 1];
	memcpy(longer, wrapped, sizeof wrapped);
	longer[AUTHZ_WRAPPED_LEN] = 0;
	assert_status(authz_secrets_unwrap(h, id, "alice", wrapped, sizeof wrapped - 1, &back),
	              KMS_INVALID_CIPHERTEXT);
	assert_status(authz_secrets_unwrap(h, id, "alice", longer, sizeof longer, &back),
	              KMS_INVALID_CIPHERTEXT);
	assert_status(authz_secrets_unwrap(h, id, "alice", NULL, 0, &back), KMS_INVALID_CIPHERTEXT);
	assert_null(back);
	/* Names that are not names. */
	assert_status(authz_secrets_unwrap(h, "AK", "alice", wrapped, sizeof wrapped, &back),
	              KMS_INVALID_ARGUMENT);
	assert_status(authz_secrets_unwrap(h, id, "a lice", wrapped, sizeof wrapped, &back),
	              KMS_INVALID_ARGUMENT);
	uint8_t none[AUTHZ_WRAPPED_LEN];
	char no_id[AUTHZ_ID_SIZE];
	assert_status(authz_secrets_new(h, "bad name", no_id, &back, none), KMS_INVALID_ARGUMENT);
	assert_null(back);
	assert_string_equal(no_id, "");

	/* The real pair still works. */
	assert_ok(authz_secrets_unwrap(h, id, "alice", wrapped, sizeof wrapped, &back));
	assert_memory_equal(back, secret, AUTHZ_SECRET_LEN);
	kms_secure_free(back);
	kms_secure_free(secret);
	kms_secure_free(other);
}

/* ---- the secret is nowhere on disk ---- */

typedef struct file_bytes {
	uint8_t *bytes;
	size_t len;
	bool exists;
} file_bytes;

static file_bytes read_file(const char *dir, const char *name)
{
	char path[1024];
	file_bytes f = { 0 };
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return f;
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	f.exists = true;
	f.len = (size_t)sb.st_size;
	f.bytes = malloc(f.len ? f.len : 1);
	assert_non_null(f.bytes);
	size_t got = 0;
	while (got < f.len) {
		ssize_t n = read(fd, f.bytes + got, f.len - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	close(fd);
	return f;
}

static bool contains(const file_bytes *f, const void *needle, size_t len)
{
	return f->exists && memmem(f->bytes, f->len, needle, len) != NULL;
}

/* Every form of the secret a careless write could leave: raw, hex in both
 * cases, base64 and base64url (unpadded, so padded text matches too). */
typedef struct secret_forms {
	uint8_t raw[AUTHZ_SECRET_LEN];
	char hex_lower[2 * AUTHZ_SECRET_LEN + 1];
	char hex_upper[2 * AUTHZ_SECRET_LEN + 1];
	char b64[64];
	char b64url[64];
} secret_forms;

static void forms_of(const uint8_t *secret, secret_forms *out)
{
	memcpy(out->raw, secret, AUTHZ_SECRET_LEN);
	hex(secret, AUTHZ_SECRET_LEN, out->hex_lower, false);
	hex(secret, AUTHZ_SECRET_LEN, out->hex_upper, true);
	assert_true(kms_base64_encode(secret, AUTHZ_SECRET_LEN, out->b64, sizeof out->b64));
	char *pad = strchr(out->b64, '=');
	if (pad)
		*pad = '\0';
	snprintf(out->b64url, sizeof out->b64url, "%s", out->b64);
	for (char *c = out->b64url; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	assert_true(strlen(out->b64) >= 42);
}

static void assert_absent(const file_bytes *f, const char *name, const secret_forms *s)
{
	if (contains(f, s->raw, sizeof s->raw))
		fail_msg("%s holds a secret's raw bytes", name);
	if (contains(f, s->hex_lower, strlen(s->hex_lower)) ||
	    contains(f, s->hex_upper, strlen(s->hex_upper)))
		fail_msg("%s holds a secret in hex", name);
	if (contains(f, s->b64, strlen(s->b64)) || contains(f, s->b64url, strlen(s->b64url)))
		fail_msg("%s holds a secret in base64", name);
}

static const char *const db_files[] = { "kms.db", "kms.db-wal", "kms.db-shm" };
#define DB_FILES (sizeof db_files / sizeof db_files[0])
#define KEYS_MADE 3

/* Reads the store's files; asserts no secret is in any of them and that
 * each wrapped form is in one of them (the search looks where the rows
 * are). Returns how many of the files existed. */
static size_t check_files(const char *dir, const secret_forms *forms,
                          uint8_t wrapped[KEYS_MADE][AUTHZ_WRAPPED_LEN], bool want_wal)
{
	file_bytes files[DB_FILES];
	size_t existing = 0;
	for (size_t i = 0; i < DB_FILES; i++) {
		files[i] = read_file(dir, db_files[i]);
		existing += files[i].exists;
	}
	assert_true(files[0].exists && files[0].len > 0);
	if (want_wal)
		assert_true(files[1].exists && files[1].len > 0);
	for (size_t k = 0; k < KEYS_MADE; k++) {
		bool found = false;
		for (size_t i = 0; i < DB_FILES; i++) {
			assert_absent(&files[i], db_files[i], &forms[k]);
			found = found || contains(&files[i], wrapped[k], AUTHZ_WRAPPED_LEN);
		}
		if (!found)
			fail_msg("wrapped secret %zu is in none of the store's files", k);
	}
	for (size_t i = 0; i < DB_FILES; i++)
		free(files[i].bytes);
	return existing;
}

typedef struct make_run {
	store *st;
	secret_forms forms[KEYS_MADE];
	uint8_t wrapped[KEYS_MADE][AUTHZ_WRAPPED_LEN];
	char ids[KEYS_MADE][AUTHZ_ID_SIZE];
} make_run;

/* Three access keys for one principal, the way kmsd will make them: two,
 * the first revoked, a third. */
static void make_keys(void *p)
{
	make_run *run = p;
	for (size_t k = 0; k < KEYS_MADE; k++) {
		uint8_t *secret = NULL;
		assert_ok(authz_secrets_new(h, "svc", run->ids[k], &secret, run->wrapped[k]));
		forms_of(secret, &run->forms[k]);
		kms_secure_free(secret);
		store_access_key row;
		memset(&row, 0, sizeof row);
		memcpy(row.id, run->ids[k], sizeof row.id);
		snprintf(row.principal, sizeof row.principal, "svc");
		memcpy(row.wrapped, run->wrapped[k], AUTHZ_WRAPPED_LEN);
		row.wrapped_len = AUTHZ_WRAPPED_LEN;
		row.created_at = T_NOW + (int64_t)k;
		assert_ok(store_access_key_create(run->st, &row));
		if (k == 1)
			assert_ok(store_access_key_revoke(run->st, run->ids[0], T_NOW + 10));
	}
}

static void test_secret_not_on_disk(void **state)
{
	(void)state;
	const char *dir = t_dir("authz");
	store *st;
	bool created;
	assert_ok(store_open(dir, &st, &created));
	store_principal p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "svc");
	p.roles = PRINCIPAL_ROLE_APP;
	p.state = PRINCIPAL_STATE_ENABLED;
	assert_ok(store_principal_create(st, &p));

	static make_run run;
	run.st = st;
	const char *log = t_capture_stderr(make_keys, &run);
	file_bytes log_file = { .bytes = (uint8_t *)log, .len = strlen(log), .exists = true };
	for (size_t k = 0; k < KEYS_MADE; k++)
		assert_absent(&log_file, "the log", &run.forms[k]);

	/* While open, the rows are in the WAL. */
	check_files(dir, run.forms, run.wrapped, true);

	/* Every key unwraps from what the store gives back. */
	for (size_t k = 0; k < KEYS_MADE; k++) {
		store_access_key row;
		uint8_t *secret = NULL;
		assert_ok(store_access_key_get(st, run.ids[k], &row));
		assert_ok(authz_secrets_unwrap(h, row.id, row.principal, row.wrapped,
		                               row.wrapped_len, &secret));
		assert_memory_equal(secret, run.forms[k].raw, AUTHZ_SECRET_LEN);
		kms_secure_free(secret);
	}

	/* After close the WAL is checkpointed into kms.db. */
	store_close(st);
	check_files(dir, run.forms, run.wrapped, false);
	memset(&run, 0, sizeof run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrap_key),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_moved_secret_fails),
		cmocka_unit_test(test_secret_not_on_disk),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
