/*
 * Signed notes and checkpoints against the reference implementation's own
 * vectors, byte for byte: the PeterNeumann and EnochRoot keys, notes and
 * the malformed-note table of golang.org/x/mod/sumdb/note (note_test.go),
 * and the examples of c2sp.org/signed-note and c2sp.org/tlog-checkpoint.
 * Ed25519 is deterministic (RFC 8032), so signing the Go test's text with
 * its private key must reproduce its note exactly: that is what any Go,
 * C2SP or witness verifier accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/error.h"
#include "common/tlog/tlog_note.h"
#include "tests/support/tlog_test_util.h"

/* golang.org/x/mod/sumdb/note, note_test.go */
#define PETER_VKEY "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define PETER_SKEY_B64 "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz" /* 0x01 || seed */
#define ENOCH_VKEY "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
#define GO_TEXT                                                                \
	"If you think cryptography is the answer to your problem,\n"           \
	"then you don't know what your problem is.\n"
#define PETER_SIG                                                              \
	"\xe2\x80\x94 PeterNeumann "                                           \
	"x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
#define ENOCH_SIG                                                              \
	"\xe2\x80\x94 EnochRoot "                                              \
	"rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
#define GO_NOTE GO_TEXT "\n" PETER_SIG

/* c2sp.org/tlog-checkpoint's example. */
#define SPEC_CHECKPOINT_BODY                                                   \
	"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
#define SPEC_CHECKPOINT                                                        \
	SPEC_CHECKPOINT_BODY "\n\xe2\x80\x94 example.com/behind-the-sofa "     \
	                     "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
/* c2sp.org/signed-note's example: its text has an empty line. */
#define SPEC_NOTE                                                              \
	"Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \xc3\xa8 subito sera.\n" \
	"\n\xe2\x80\x94 quasimodo.example/salvatore "                          \
	"NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"

/* docs/audit-log.md sections 6 and 7: the checkpoint of the eight CT test
 * leaves (root 5dc9da79...), signed with the PeterNeumann private key under
 * the name kms.example/audit; computed independently with Python's
 * cryptography and hashlib. */
#define DOC_ORIGIN "kms.example/audit"
#define DOC_VKEY "kms.example/audit+d3f25667+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define DOC_BODY "kms.example/audit\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
#define DOC_NOTE                                                               \
	DOC_BODY "\n\xe2\x80\x94 kms.example/audit "                           \
	         "0/JWZ0cCo0Iamab/FqjACE/uLPkI3COquh+pyLBBAd28qM+E2mqKN2j5fNViK4umT+aJKS7RckQ7z4vfDgXRZBH+TgA=\n"
#define CT_ROOT_8 "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"

static void peter_key_named(test_key *key, const char *name);

static void peter_key(test_key *key)
{
	peter_key_named(key, "PeterNeumann");
}

static void peter_key_named(test_key *key, const char *name)
{
	uint8_t typed[33];
	assert_int_equal(EVP_DecodeBlock(typed, (const unsigned char *)PETER_SKEY_B64,
	                                 (int)strlen(PETER_SKEY_B64)),
	                 33);
	assert_int_equal(typed[0], TLOG_SIG_TYPE_ED25519);
	test_key_from_seed(key, name, typed + 1);
}

static tlog_verifier verifier(const char *vkey)
{
	tlog_verifier v;
	assert_int_equal(tlog_verifier_key_parse(vkey, &v), KMS_OK);
	return v;
}

static void assert_msg(const char *want)
{
	if (strstr(kms_error_message(), want) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", kms_error_message(), want);
}

static kms_status open_note(const char *text, const char *vkey, tlog_note_view *view)
{
	tlog_verifier v = verifier(vkey);
	return tlog_note_verify(text, strlen(text), &v, "note", view);
}

static void go_verifier_keys(void **state)
{
	tlog_verifier v = verifier(PETER_VKEY);
	char again[TLOG_VERIFIER_KEY_MAX];
	assert_string_equal(v.name, "PeterNeumann");
	assert_int_equal(v.key_id, 0xc74f20a3);
	assert_int_equal(tlog_verifier_key_format(v.name, v.public_key, again), KMS_OK);
	assert_string_equal(again, PETER_VKEY);
	uint32_t id;
	assert_int_equal(tlog_key_id(v.name, v.public_key, &id), KMS_OK);
	assert_int_equal(id, 0xc74f20a3);

	v = verifier(ENOCH_VKEY);
	assert_string_equal(v.name, "EnochRoot");
	assert_int_equal(v.key_id, 0xaf0cfe78);
	/* Go's ParseUint takes upper-case hex too. */
	v = verifier("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
	assert_int_equal(v.key_id, 0xc74f20a3);

	/* The private key of the Go test has this verifier key. */
	test_key key;
	peter_key(&key);
	assert_string_equal(key.vkey, PETER_VKEY);
	test_key_free(&key);
}

/* Go's TestNewVerifier: every proper substring and every one-byte change
 * of the key is refused. */
static void go_verifier_key_manglings(void **state)
{
	char b[] = PETER_VKEY;
	size_t len = strlen(b);
	char sub[sizeof b];
	tlog_verifier v;
	for (size_t i = 0; i <= len; i++)
		for (size_t j = i + 1; j <= len; j++) {
			if (i == 0 && j == len)
				continue;
			memcpy(sub, b + i, j - i);
			sub[j - i] = '\0';
			if (tlog_verifier_key_parse(sub, &v) == KMS_OK)
				fail_msg("accepted substring \"%s\"", sub);
		}
	for (size_t i = 0; i < len; i++) {
		b[i]++;
		if (tlog_verifier_key_parse(b, &v) == KMS_OK)
			fail_msg("accepted changed key \"%s\"", b);
		b[i]--;
	}
	/* wrong length key, with adjusted key hash; unknown algorithm, likewise */
	assert_int_equal(tlog_verifier_key_parse(
	                         "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
	                         &v),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_verifier_key_parse(
	                         "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &v),
	                 KMS_INVALID_ARGUMENT);
	assert_string_equal(v.name, "");
	assert_int_equal(tlog_verifier_key_parse(NULL, &v), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_verifier_key_parse("", &v), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_verifier_key_parse("Peter Neumann+c74f20a3+ARpc", &v),
	                 KMS_INVALID_ARGUMENT);
}

/* Go's TestSign: our signer reproduces the Go note byte for byte. */
static void go_sign_reproduces_the_note(void **state)
{
	test_key key;
	char out[TEST_NOTE_CAP];
	size_t len;
	peter_key(&key);
	assert_int_equal(tlog_note_sign(GO_TEXT, strlen(GO_TEXT), key.name, key.public_key,
	                                test_sign, &key, out, sizeof out, &len),
	                 KMS_OK);
	assert_int_equal(len, strlen(GO_NOTE));
	assert_string_equal(out, GO_NOTE);

	/* Bad inputs: no final newline, a bad name, a small buffer. */
	assert_int_equal(tlog_note_sign("abc", 3, key.name, key.public_key, test_sign, &key, out,
	                                sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_string_equal(out, "");
	assert_int_equal(tlog_note_sign(GO_TEXT, strlen(GO_TEXT), "a+b", key.public_key, test_sign,
	                                &key, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_note_sign("a\rb\n", 4, key.name, key.public_key, test_sign, &key, out,
	                                sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_note_sign(GO_TEXT, strlen(GO_TEXT), key.name, key.public_key,
	                                test_sign, &key, out, strlen(GO_NOTE), &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
	test_key_free(&key);
}

/* Go's TestOpen. */
static void go_open(void **state)
{
	tlog_note_view view;
	assert_int_equal(open_note(GO_NOTE, PETER_VKEY, &view), KMS_OK);
	assert_int_equal(view.body_len, strlen(GO_TEXT));
	assert_memory_equal(view.body, GO_TEXT, view.body_len);

	/* One of two signatures known: either verifies the note. */
	const char *both = GO_TEXT "\n" PETER_SIG ENOCH_SIG;
	assert_int_equal(open_note(both, PETER_VKEY, &view), KMS_OK);
	assert_int_equal(open_note(both, ENOCH_VKEY, &view), KMS_OK);
	assert_memory_equal(view.body, GO_TEXT, view.body_len);

	/* No signature by the key. */
	assert_int_equal(open_note(GO_TEXT "\n" ENOCH_SIG, PETER_VKEY, &view), KMS_INVALID_CIPHERTEXT);
	assert_msg("note is not signed by key PeterNeumann+c74f20a3");
	assert_null(view.body);

	/* Too many signatures: 100 are fine, 101 are not. */
	size_t sig_len = strlen(PETER_SIG);
	char *many = malloc(strlen(GO_TEXT) + 1 + 101 * sig_len + 1);
	strcpy(many, GO_TEXT "\n");
	for (int i = 0; i < 100; i++)
		strcat(many, PETER_SIG);
	assert_int_equal(open_note(many, PETER_VKEY, &view), KMS_OK);
	strcat(many, PETER_SIG);
	assert_int_equal(open_note(many, PETER_VKEY, &view), KMS_INVALID_CIPHERTEXT);
	assert_msg("note is malformed: more than 100 signatures");
	free(many);

	/* An invalid signature by the key. */
	char bad[2048];
	snprintf(bad, sizeof bad, "%s\n%.60sABCD%s", GO_TEXT, PETER_SIG, &PETER_SIG[60]);
	assert_int_equal(open_note(bad, PETER_VKEY, &view), KMS_INVALID_CIPHERTEXT);
	assert_msg("note signature does not verify with key PeterNeumann+c74f20a3");

	/* Repeated signatures by a key count once (the first); a bad one by
	 * another key is not ours to judge. */
	char enoch_abcd[256];
	snprintf(enoch_abcd, sizeof enoch_abcd, "%.60sABCD%s", ENOCH_SIG, &ENOCH_SIG[60]);
	snprintf(bad, sizeof bad, "%s\n%s%s%s%s%s", GO_TEXT, PETER_SIG, PETER_SIG, ENOCH_SIG,
	         ENOCH_SIG, enoch_abcd);
	assert_int_equal(open_note(bad, PETER_VKEY, &view), KMS_OK);
	assert_int_equal(open_note(bad, ENOCH_VKEY, &view), KMS_OK);
	char peter_abcd[256];
	snprintf(peter_abcd, sizeof peter_abcd, "%.60sABCD%s", PETER_SIG, &PETER_SIG[60]);
	snprintf(bad, sizeof bad, "%s\n%s%s", GO_TEXT, peter_abcd, PETER_SIG);
	assert_int_equal(open_note(bad, PETER_VKEY, &view), KMS_INVALID_CIPHERTEXT);

	/* Invalid encoded message syntax: Go's table, then more. */
	static const char *const bad_msgs[] = {
		GO_TEXT,
		GO_TEXT "\n",
		GO_TEXT "\n" "\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
		"\x01" GO_TEXT "\n" PETER_SIG,
		"\xff" GO_TEXT "\n" PETER_SIG,
		GO_TEXT "\n" "\xe2\x80\x94 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
		GO_TEXT "\n" PETER_SIG "Unexpected line.\n",
		/* ours */
		GO_TEXT "\n" "\xe2\x80\x94 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
		GO_TEXT "\n" "\xe2\x80\x94 Peter+Neumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
		GO_TEXT "\n" "\xe2\x80\x94 PeterNeumann AAAAAA==\n",            /* 4 bytes: no signature */
		GO_TEXT "\n" "\xe2\x80\x94 PeterNeumann \n",
		GO_TEXT "\n" "\xe2\x80\x94 PeterNeumann\n",
		GO_TEXT "\n" "- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
		GO_TEXT "\n" "\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAN=\n", /* non-canonical */
		GO_TEXT "\n" "\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM\n", /* unpadded */
		GO_TEXT "\n" "\xe2\x80\x94 PeterNeumann  x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
		"If you think\r\n\n" PETER_SIG,
		GO_TEXT "\n" PETER_SIG "\n",
		"",
		"\n\n",
	};
	for (size_t i = 0; i < sizeof bad_msgs / sizeof bad_msgs[0]; i++) {
		if (open_note(bad_msgs[i], PETER_VKEY, &view) != KMS_INVALID_CIPHERTEXT)
			fail_msg("accepted bad note %zu", i);
		if (strstr(kms_error_message(), "note is malformed") == NULL)
			fail_msg("bad note %zu: \"%s\"", i, kms_error_message());
		assert_null(view.body);
	}

	/* A whole note over the bound. */
	size_t huge_len = TLOG_NOTE_MAX + 1;
	char *huge = malloc(huge_len + 1);
	memset(huge, 'a', huge_len);
	memcpy(huge + huge_len - strlen("\n\n" PETER_SIG), "\n\n" PETER_SIG, strlen("\n\n" PETER_SIG));
	huge[huge_len] = '\0';
	assert_int_equal(tlog_note_verify(huge, huge_len, &(tlog_verifier){ 0 }, NULL, &view),
	                 KMS_INVALID_CIPHERTEXT);
	assert_msg("note is malformed: 1048577 bytes");
	free(huge);
}

/* The vector in docs/audit-log.md, byte for byte. */
static void doc_vector(void **state)
{
	test_key key;
	uint8_t root[TLOG_HASH_SIZE];
	char body[256], note[TEST_NOTE_CAP];
	size_t body_len, note_len;
	peter_key_named(&key, DOC_ORIGIN);
	assert_string_equal(key.vkey, DOC_VKEY);
	test_hex32(CT_ROOT_8, root);
	assert_int_equal(tlog_checkpoint_format(DOC_ORIGIN, 8, root, NULL, body, sizeof body,
	                                        &body_len),
	                 KMS_OK);
	assert_string_equal(body, DOC_BODY);
	assert_int_equal(tlog_note_sign(body, body_len, key.name, key.public_key, test_sign, &key,
	                                note, sizeof note, &note_len),
	                 KMS_OK);
	assert_string_equal(note, DOC_NOTE);

	tlog_note_view view;
	tlog_checkpoint cp;
	assert_int_equal(open_note(DOC_NOTE, DOC_VKEY, &view), KMS_OK);
	assert_int_equal(tlog_checkpoint_parse(view.body, view.body_len, NULL, &cp), KMS_OK);
	assert_int_equal(cp.tree_size, 8);
	assert_memory_equal(cp.root, root, TLOG_HASH_SIZE);
	test_key_free(&key);
}

/* Read without a key, a note's body is what a verified read gives, and a
 * text with no blank line is refused the same way. */
static void body_without_a_key(void **state)
{
	tlog_note_view verified, unverified;
	assert_int_equal(open_note(DOC_NOTE, DOC_VKEY, &verified), KMS_OK);
	assert_int_equal(tlog_note_body(DOC_NOTE, strlen(DOC_NOTE), "checkpoint", &unverified),
	                 KMS_OK);
	assert_ptr_equal(unverified.body, DOC_NOTE);
	assert_int_equal(unverified.body_len, verified.body_len);
	const char *doc_note = DOC_NOTE;
	assert_string_equal(doc_note + unverified.body_len, doc_note + verified.body_len);

	static const char no_blank[] = "origin\n8\nroot\n\xe2\x80\x94 key sig\n";
	assert_int_equal(tlog_note_body(no_blank, strlen(no_blank), "checkpoint", &unverified),
	                 KMS_INVALID_CIPHERTEXT);
	assert_null(unverified.body);
	assert_msg("checkpoint is malformed: no blank line before the signatures");
}

/* The specs' examples parse as notes (signed by keys we do not have). */
static void spec_examples(void **state)
{
	tlog_note_view view;
	assert_int_equal(open_note(SPEC_NOTE, PETER_VKEY, &view), KMS_INVALID_CIPHERTEXT);
	assert_msg("note is not signed by key PeterNeumann+c74f20a3");
	assert_int_equal(open_note(SPEC_CHECKPOINT, PETER_VKEY, &view), KMS_INVALID_CIPHERTEXT);
	assert_msg("note is not signed by key PeterNeumann+c74f20a3");

	/* A key with the note's name but another id is another key. */
	test_key key;
	test_key_generate(&key, "quasimodo.example/salvatore");
	assert_int_equal(open_note(SPEC_NOTE, key.vkey, &view), KMS_INVALID_CIPHERTEXT);
	assert_msg("is not signed by key quasimodo.example/salvatore+");
	test_key_free(&key);

	tlog_checkpoint cp;
	uint8_t root[33];
	assert_int_equal(tlog_checkpoint_parse(SPEC_CHECKPOINT_BODY, strlen(SPEC_CHECKPOINT_BODY),
	                                       NULL, &cp),
	                 KMS_OK);
	assert_int_equal(cp.origin_len, strlen("example.com/behind-the-sofa"));
	assert_memory_equal(cp.origin, "example.com/behind-the-sofa", cp.origin_len);
	assert_int_equal(cp.tree_size, 20852163);
	assert_int_equal(EVP_DecodeBlock(root, (const unsigned char *)"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", 44), 33);
	assert_memory_equal(cp.root, root, TLOG_HASH_SIZE);
	assert_int_equal(cp.extensions_len, 0);
}

/* A note signed with a key OpenSSL generates round-trips, and breaks. */
static void generated_key_round_trip(void **state)
{
	test_key key, other;
	test_key_generate(&key, "kms.example/audit");
	test_key_generate(&other, "kms.example/audit");
	tlog_verifier v = verifier(key.vkey);
	assert_string_equal(v.name, "kms.example/audit");
	assert_memory_equal(v.public_key, key.public_key, TLOG_ED25519_PUBLIC_KEY_SIZE);

	uint8_t root[TLOG_HASH_SIZE];
	char note[TEST_NOTE_CAP];
	test_sha256("root", 4, root);
	test_sign_checkpoint(&key, "kms.example/audit", 12345, root, note);
	tlog_note_view view;
	assert_int_equal(tlog_note_verify(note, strlen(note), &v, "checkpoint", &view), KMS_OK);
	tlog_checkpoint cp;
	assert_int_equal(tlog_checkpoint_parse(view.body, view.body_len, NULL, &cp), KMS_OK);
	assert_int_equal(cp.tree_size, 12345);
	assert_memory_equal(cp.root, root, TLOG_HASH_SIZE);

	/* Any change to the body breaks the signature. */
	size_t body_len = view.body_len;
	for (size_t i = 0; i < body_len - 1; i++) {
		char copy[TEST_NOTE_CAP];
		strcpy(copy, note);
		copy[i] = copy[i] == '1' ? '2' : '1';
		assert_int_not_equal(tlog_note_verify(copy, strlen(copy), &v, "checkpoint", &view),
		                     KMS_OK);
	}
	char copy[TEST_NOTE_CAP];
	strcpy(copy, note);
	copy[strstr(copy, "\n12345\n") - copy + 3] = '4';
	assert_int_equal(tlog_note_verify(copy, strlen(copy), &v, "checkpoint", &view),
	                 KMS_INVALID_CIPHERTEXT);
	assert_msg("checkpoint signature does not verify with key kms.example/audit+");

	/* Another key of the same name: not our signature. */
	tlog_verifier ov = verifier(other.vkey);
	assert_int_equal(tlog_note_verify(note, strlen(note), &ov, "checkpoint", &view),
	                 KMS_INVALID_CIPHERTEXT);
	assert_msg("checkpoint is not signed by key kms.example/audit+");

	/* A signer whose key is not the public key given: refused, nothing out. */
	size_t len = 1;
	assert_int_equal(tlog_note_sign("x\n", 2, key.name, key.public_key, test_sign, &other, note,
	                                sizeof note, &len),
	                 KMS_INTERNAL);
	assert_int_equal(len, 0);
	assert_string_equal(note, "");
	test_key_free(&key);
	test_key_free(&other);
}

static void key_names(void **state)
{
	static const char *const good[] = { "kms.example/audit", "PeterNeumann", "a",
		                            "r\xc3\xa9gion.example", "x\xe2\x80\x8by" /* ZWSP is no space */ };
	static const char *const bad[] = { "", "a b", "a+b", "a\tb", "a\nb",
		                           "a\xc2\xa0" "b",    /* NBSP */
		                           "a\xe2\x80\x83" "b", /* EM SPACE */
		                           "a\xe3\x80\x80" "b", /* IDEOGRAPHIC SPACE */
		                           "a\xc2\x85" "b",    /* NEL */
		                           "a\xff",            /* not UTF-8 */
		                           "a\xc0\xaf",        /* overlong */
		                           "a\xed\xa0\x80" };  /* surrogate */
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_int_equal(tlog_key_name_check(good[i], strlen(good[i])), KMS_OK);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (tlog_key_name_check(bad[i], strlen(bad[i])) == KMS_OK)
			fail_msg("accepted key name %zu", i);
	char longest[TLOG_KEY_NAME_MAX + 2];
	memset(longest, 'n', sizeof longest);
	assert_int_equal(tlog_key_name_check(longest, TLOG_KEY_NAME_MAX), KMS_OK);
	assert_int_equal(tlog_key_name_check(longest, TLOG_KEY_NAME_MAX + 1), KMS_INVALID_ARGUMENT);
	char vkey[TLOG_VERIFIER_KEY_MAX];
	uint8_t pub[TLOG_ED25519_PUBLIC_KEY_SIZE] = { 0 };
	longest[TLOG_KEY_NAME_MAX] = '\0';
	assert_int_equal(tlog_verifier_key_format(longest, pub, vkey), KMS_OK);
	tlog_verifier v = verifier(vkey);
	assert_string_equal(v.name, longest);
	assert_int_equal(tlog_verifier_key_format("a b", pub, vkey), KMS_INVALID_ARGUMENT);
	assert_string_equal(vkey, "");
}

static void checkpoint_round_trip(void **state)
{
	uint8_t root[TLOG_HASH_SIZE];
	char body[512];
	size_t len;
	tlog_checkpoint cp;
	test_sha256("x", 1, root);
	assert_int_equal(tlog_checkpoint_format("kms.example/audit", 0, root, NULL, body, sizeof body,
	                                        &len),
	                 KMS_OK);
	assert_int_equal(len, strlen(body));
	assert_int_equal(tlog_checkpoint_parse(body, len, NULL, &cp), KMS_OK);
	assert_int_equal(cp.tree_size, 0);
	assert_memory_equal(cp.root, root, TLOG_HASH_SIZE);

	assert_int_equal(tlog_checkpoint_format("o", TLOG_TREE_SIZE_MAX, root, "ext one\next two\n",
	                                        body, sizeof body, &len),
	                 KMS_OK);
	assert_int_equal(tlog_checkpoint_parse(body, len, NULL, &cp), KMS_OK);
	assert_int_equal(cp.tree_size, TLOG_TREE_SIZE_MAX);
	assert_int_equal(cp.extensions_len, strlen("ext one\next two\n"));
	assert_memory_equal(cp.extensions, "ext one\next two\n", cp.extensions_len);
	assert_int_equal(cp.origin_len, 1);

	/* The exact text. */
	uint8_t zero[TLOG_HASH_SIZE] = { 0 };
	assert_int_equal(tlog_checkpoint_format("example.com/log", 7, zero, NULL, body, sizeof body,
	                                        &len),
	                 KMS_OK);
	assert_string_equal(body, "example.com/log\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");

	/* Bad arguments. */
	assert_int_equal(tlog_checkpoint_format("", 1, root, NULL, body, sizeof body, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_checkpoint_format("a\nb", 1, root, NULL, body, sizeof body, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_checkpoint_format("a\rb", 1, root, NULL, body, sizeof body, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_checkpoint_format("a", TLOG_TREE_SIZE_MAX + 1, root, NULL, body,
	                                        sizeof body, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_checkpoint_format("a", 1, root, "no newline", body, sizeof body, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_checkpoint_format("a", 1, root, "a\n\nb\n", body, sizeof body, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_checkpoint_format("a", 1, root, NULL, body, 20, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_string_equal(body, "");
}

static void checkpoint_parse_is_strict(void **state)
{
	static const struct {
		const char *body;
		const char *msg;
	} bad[] = {
		{ "", "no origin line" },
		{ "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "origin is 0 bytes" },
		{ "o\n", "no tree size line" },
		{ "o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "leading zero" },
		{ "o\n00\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "leading zero" },
		{ "o\n\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "tree size line is 0" },
		{ "o\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "not a decimal" },
		{ "o\n+1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "not a decimal" },
		{ "o\n 1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "not a decimal" },
		{ "o\n9223372036854775809\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "is over" },
		{ "o\n18446744073709551616\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "is over" },
		{ "o\n123456789012345678901\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "21 characters" },
		{ "o\n1\n", "no root hash line" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "no root hash line" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", "root hash is not base64" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n", "root hash is not base64" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n", "root hash is not base64" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "root hash is not base64" },
		{ "o\n1\n AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "root hash is not base64" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-_A=\n", "root hash is not base64" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n", "extension line 1 is empty" },
		{ "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next", "line 4 does not end" },
		{ "o\r\n1\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n", "control character 0x0d" },
		{ "o\xff\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "not UTF-8" },
	};
	tlog_checkpoint cp;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (tlog_checkpoint_parse(bad[i].body, strlen(bad[i].body), "checkpoint", &cp) !=
		    KMS_INVALID_CIPHERTEXT)
			fail_msg("accepted bad checkpoint %zu", i);
		if (strstr(kms_error_message(), bad[i].msg) == NULL ||
		    strstr(kms_error_message(), "checkpoint is malformed") == NULL)
			fail_msg("bad checkpoint %zu: \"%s\" lacks \"%s\"", i, kms_error_message(),
			         bad[i].msg);
		assert_null(cp.origin);
	}
	/* The largest size, and an origin with spaces (the spec lets clients
	 * assume nothing about it). */
	const char *ok = "a log with spaces\n9223372036854775808\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
	assert_int_equal(tlog_checkpoint_parse(ok, strlen(ok), NULL, &cp), KMS_OK);
	assert_int_equal(cp.tree_size, TLOG_TREE_SIZE_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(go_verifier_keys),
		cmocka_unit_test(go_verifier_key_manglings),
		cmocka_unit_test(go_sign_reproduces_the_note),
		cmocka_unit_test(go_open),
		cmocka_unit_test(spec_examples),
		cmocka_unit_test(doc_vector),
		cmocka_unit_test(body_without_a_key),
		cmocka_unit_test(generated_key_round_trip),
		cmocka_unit_test(key_names),
		cmocka_unit_test(checkpoint_round_trip),
		cmocka_unit_test(checkpoint_parse_is_strict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
