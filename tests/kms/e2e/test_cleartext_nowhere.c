/*
 * test_cleartext_nowhere: a wrapped key version's material exists in the
 * clear only inside the HSM (docs/key-hierarchy.md).
 *
 * A real kmsd creates a wrapped key and a second one it rotates, encrypts,
 * decrypts and generates data keys under them, and stops. Then this test,
 * on its throw-away token, does what kmsd never does: it unwraps version 1's
 * stored material under its KEK with an extractable, non-sensitive template
 * (test-only), reads the 32 key bytes with C_GetAttributeValue(CKA_VALUE),
 * and searches every file under the test folder (kms.db and its WAL, the
 * audit log and tiles, kmsd's log, the token's own files) for them: raw, as
 * hex in either case, and as base64 at each of the three alignments. A
 * control file holding them proves the search finds what is there, and the
 * wrapped bytes themselves are found in kms.db (so the store was searched).
 * Also: DescribeKey shows the protection and each version's KEK.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "kms/format/keyid.h"
#include "kms/store/store.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/hsm_test.h"

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

#define KEY_LEN 32
#define NEEDLES_MAX 8
#define MAX_FILE (512u << 20)

static harness g_h;

typedef struct needle {
	char what[32];
	uint8_t bytes[96];
	size_t len;
} needle;

typedef struct needles {
	needle n[NEEDLES_MAX];
	size_t count;
} needles;

static void needle_add(needles *ns, const char *what, const void *bytes, size_t len)
{
	assert_true(ns->count < NEEDLES_MAX && len <= sizeof ns->n[0].bytes && len >= 16);
	needle *n = &ns->n[ns->count++];
	snprintf(n->what, sizeof n->what, "%s", what);
	memcpy(n->bytes, bytes, len);
	n->len = len;
}

/* The key as raw bytes, hex both cases, and the stable middle of its base64
 * at each alignment (a 0, 1 or 2 byte prefix). */
static void needles_for(const uint8_t key[KEY_LEN], needles *ns)
{
	static const char lower[] = "0123456789abcdef", upper[] = "0123456789ABCDEF";
	char hex[2 * KEY_LEN];
	memset(ns, 0, sizeof *ns);
	needle_add(ns, "raw bytes", key, KEY_LEN);
	for (size_t i = 0; i < KEY_LEN; i++) {
		hex[2 * i] = lower[key[i] >> 4];
		hex[2 * i + 1] = lower[key[i] & 15];
	}
	needle_add(ns, "lowercase hex", hex, sizeof hex);
	for (size_t i = 0; i < KEY_LEN; i++) {
		hex[2 * i] = upper[key[i] >> 4];
		hex[2 * i + 1] = upper[key[i] & 15];
	}
	needle_add(ns, "uppercase hex", hex, sizeof hex);
	for (size_t shift = 0; shift < 3; shift++) {
		uint8_t in[KEY_LEN + 2] = { 0 };
		unsigned char out[64];
		memcpy(in + shift, key, KEY_LEN);
		int len = EVP_EncodeBlock(out, in, (int)(KEY_LEN + shift));
		assert_true(len > 16);
		/* Skip the characters the prefix or the padding touch. */
		char what[32];
		snprintf(what, sizeof what, "base64, shift %zu", shift);
		needle_add(ns, what, out + 4, (size_t)len - 8);
	}
}

static uint8_t *read_all(const char *path, size_t *len)
{
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_size >= 0 && (uint64_t)st.st_size <= MAX_FILE);
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return buf;
}

/* Searches every regular file under dir (recursively, bounded depth);
 * returns how many files hold a needle, naming the first in found. */
static size_t search_tree(const char *dir, const needles *ns, int depth, size_t *files,
                          char *found, size_t found_cap)
{
	size_t hits = 0;
	assert_true(depth < 8);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[1024];
		int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		assert_true(n > 0 && (size_t)n < sizeof path);
		struct stat st;
		if (lstat(path, &st) != 0)
			continue; /* removed meanwhile (kmsd is stopped: nothing should be) */
		if (S_ISDIR(st.st_mode)) {
			hits += search_tree(path, ns, depth + 1, files, found, found_cap);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		size_t len;
		uint8_t *buf = read_all(path, &len);
		if (!buf)
			continue;
		(*files)++;
		for (size_t i = 0; i < ns->count; i++)
			if (ns->n[i].len <= len && memmem(buf, len, ns->n[i].bytes, ns->n[i].len)) {
				if (!hits && found[0] == '\0')
					snprintf(found, found_cap, "%s (%s)", path, ns->n[i].what);
				hits++;
				break;
			}
		free(buf);
	}
	closedir(d);
	return hits;
}

/* ---- kmsd's part ---- */

static void create_key(Kms__KeyProtection protection, char id[E2E_KEY_ID_SIZE])
{
	Kms__Response *r = e2e_create_key_as(&g_h, protection);
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_CREATE_KEY,
	      "CreateKey: %s", r ? r->message : "no reply");
	const Kms__KeyMetadata *m = r->create_key->key_metadata;
	snprintf(id, E2E_KEY_ID_SIZE, "%s", m->key_id);
	Kms__KeyProtection want = protection == KMS__KEY_PROTECTION__KEY_PROTECTION_UNSPECIFIED
	                                  ? KMS__KEY_PROTECTION__WRAPPED
	                                  : protection;
	CHECK(m->protection == want, "CreateKey: protection %d, want %d", m->protection, want);
	CHECK(m->n_versions == 1, "CreateKey: %zu versions", m->n_versions);
	const char *kek = m->versions[0]->kek;
	if (want == KMS__KEY_PROTECTION__WRAPPED)
		CHECK(!strcmp(kek, "kms-kek-00000001"), "CreateKey: v1 wrapped under \"%s\"", kek);
	else
		CHECK(kek[0] == '\0', "CreateKey: hsm-resident v1 names KEK \"%s\"", kek);
	kms__response__free_unpacked(r, NULL);
}

static void use_key(const char *id)
{
	static const uint8_t plaintext[] = "the data of one data principal";
	for (int i = 0; i < 3; i++) {
		Kms__Response *r = e2e_encrypt(&g_h, id, plaintext, sizeof plaintext);
		CHECK(r && r->status == KMS__STATUS__OK, "Encrypt: %s", r ? r->message : "no reply");
		Kms__Response *d = e2e_decrypt(&g_h, r->encrypt->ciphertext_blob.data,
		                               r->encrypt->ciphertext_blob.len);
		CHECK(d && d->status == KMS__STATUS__OK && d->decrypt->plaintext.len == sizeof plaintext &&
		              !memcmp(d->decrypt->plaintext.data, plaintext, sizeof plaintext),
		      "Decrypt: %s", d ? d->message : "no reply");
		kms__response__free_unpacked(r, NULL);
		kms__response__free_unpacked(d, NULL);
	}
}

/* ---- the test's own look, kmsd stopped ---- */

/* The stored material of key_id's version 1 (kms.db, through the store). */
static void stored_material(const char *key_id, store_material *m)
{
	char dir[700];
	snprintf(dir, sizeof dir, "%s/data", g_h.dir);
	store *st = NULL;
	bool created = true;
	CHECK(store_open(dir, &st, &created) == KMS_OK, "store_open: %s", kms_error_message());
	CHECK(!created, "kms.db was not there");
	CHECK(store_version_material_get(st, key_id, 1, m) == KMS_OK, "material: %s",
	      kms_error_message());
	store_close(st);
	CHECK(m->wrapped_len >= STORE_WRAPPED_MIN && !strcmp(m->kek_hsm_id, "kms-kek-00000001"),
	      "material: %zu bytes under %s", m->wrapped_len, m->kek_hsm_id);
}

/* Unwraps the material as no kmsd ever would: extractable, not sensitive,
 * then reads CKA_VALUE. */
static void unwrap_in_the_clear(const store_material *m, uint8_t key[KEY_LEN])
{
	hsm *h = test_open();
	test_raw raw;
	test_raw_open(&raw);
	CK_RV rv = raw.p11->C_Login(raw.session, CKU_USER, (CK_UTF8CHAR_PTR)test_pin(),
	                            strlen(test_pin()));
	CHECK(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN, "C_Login: 0x%lx", rv);
	hsm_object_id kek_id = test_id(m->kek_hsm_id);
	CK_OBJECT_HANDLE kek = test_raw_find(&raw, &kek_id, CKO_SECRET_KEY);

	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof cls },       { CKA_KEY_TYPE, &type, sizeof type },
		{ CKA_TOKEN, &no, sizeof no },         { CKA_SENSITIVE, &no, sizeof no },
		{ CKA_EXTRACTABLE, &yes, sizeof yes },
	};
	CK_MECHANISM mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_HANDLE clear = CK_INVALID_HANDLE;
	rv = raw.p11->C_UnwrapKey(raw.session, &mech, kek, (CK_BYTE_PTR)m->wrapped, m->wrapped_len,
	                          tmpl, sizeof tmpl / sizeof tmpl[0], &clear);
	CHECK(rv == CKR_OK, "C_UnwrapKey (test-only, extractable): 0x%lx", rv);
	CK_ATTRIBUTE value = { CKA_VALUE, key, KEY_LEN };
	rv = raw.p11->C_GetAttributeValue(raw.session, clear, &value, 1);
	CHECK(rv == CKR_OK && value.ulValueLen == KEY_LEN, "CKA_VALUE: 0x%lx, %lu bytes", rv,
	      (unsigned long)value.ulValueLen);
	(void)raw.p11->C_DestroyObject(raw.session, clear);
	test_raw_close(&raw);
	hsm_close(h);
	uint8_t zero[KEY_LEN] = { 0 };
	CHECK(memcmp(key, zero, KEY_LEN) != 0, "the unwrapped key is all zeros");
}

static void test_cleartext_nowhere(void **state)
{
	(void)state;
	char wrapped[E2E_KEY_ID_SIZE], rotated[E2E_KEY_ID_SIZE], resident[E2E_KEY_ID_SIZE];
	harness_options o = { 0 };
	CHECK(harness_start(&g_h, &o), "kmsd did not start; see %s", g_h.log);
	create_key(KMS__KEY_PROTECTION__KEY_PROTECTION_UNSPECIFIED, wrapped);
	create_key(KMS__KEY_PROTECTION__WRAPPED, rotated);
	create_key(KMS__KEY_PROTECTION__HSM_RESIDENT, resident);
	use_key(wrapped);
	use_key(rotated);
	use_key(resident);
	Kms__Response *r = e2e_rotate(&g_h, rotated);
	CHECK(r && r->status == KMS__STATUS__OK, "RotateKey: %s", r ? r->message : "no reply");
	kms__response__free_unpacked(r, NULL);
	use_key(rotated);
	int code = harness_stop(&g_h);
	CHECK(code == 0, "kmsd exited with %d on SIGTERM; see %s", code, g_h.log);

	needles key_needles, wrap_needle = { 0 };
	size_t files = 0, hits;
	char found[1200] = "";
	const char *keys[] = { wrapped, rotated };
	for (size_t k = 0; k < 2; k++) {
		store_material m;
		uint8_t key[KEY_LEN];
		stored_material(keys[k], &m);
		unwrap_in_the_clear(&m, key);
		needles_for(key, &key_needles);

		/* The control: the search finds the key where it is. */
		char control_dir[700], control[800];
		snprintf(control_dir, sizeof control_dir, "%s/control", g_h.dir);
		assert_true(mkdir(control_dir, 0700) == 0);
		snprintf(control, sizeof control, "%s/key.txt", control_dir);
		FILE *f = fopen(control, "w");
		assert_non_null(f);
		fprintf(f, "prefix %.*s suffix\n", (int)key_needles.n[1].len,
		        (const char *)key_needles.n[1].bytes);
		fclose(f);
		size_t control_files = 0;
		found[0] = '\0';
		CHECK(search_tree(control_dir, &key_needles, 0, &control_files, found,
		                  sizeof found) == 1, "the control file was not found by the search");
		assert_int_equal(unlink(control), 0);
		assert_int_equal(rmdir(control_dir), 0);

		/* The wrapped bytes are in the store: the store is searched. */
		memset(&wrap_needle, 0, sizeof wrap_needle);
		needle_add(&wrap_needle, "wrapped bytes", m.wrapped, m.wrapped_len);
		char data_dir[700];
		snprintf(data_dir, sizeof data_dir, "%s/data", g_h.dir);
		size_t data_files = 0;
		found[0] = '\0';
		CHECK(search_tree(data_dir, &wrap_needle, 0, &data_files, found, sizeof found) >= 1,
		      "the wrapped material of %s is in no file of the data dir", keys[k]);

		/* The key itself: nowhere. */
		files = 0;
		found[0] = '\0';
		hits = search_tree(g_h.dir, &key_needles, 0, &files, found, sizeof found);
		CHECK(hits == 0, "key %s v1 in the clear in %zu of %zu files, first: %s", keys[k],
		      hits, files, found);
		print_message("key %s v1: not in any of %zu files under the test folder\n", keys[k],
		              files);
		memset(key, 0, sizeof key);
		memset(&key_needles, 0, sizeof key_needles);
	}
	CHECK(files >= 5, "only %zu files searched", files);
}

static int teardown(void **state)
{
	(void)state;
	harness_kill9(&g_h);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cleartext_nowhere),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
