/*
 * The pseudonym format (common/pseudonym.c) against docs/pseudonyms.md:
 * every test vector on that page is rebuilt from its inputs (the message
 * both ways, from the pairs and from a context encoded once; the MAC with
 * OpenSSL's HMAC under the page's test key; the text form) and read back;
 * then each refusal: values of 0 and 1,025 bytes, a short buffer, a bad
 * context, bad key ids and versions, every way a text is not a pseudonym,
 * and the domain prefix predicate.
 *
 * The page's vectors come from an independent implementation
 * (tests/common/pseudonym_ref.py, checked by pseudonym_vectors_ref), so
 * the page, the Python and the C agree byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/context.h"
#include "common/error.h"
#include "common/pseudonym.h"

#define MAX_VECS 16
#define MSG_CAP 4096
#define LINE_MAX_CHARS 16384
#define KEY_ID "k-3f2a9c1e5d7b48a09e6c1f2d3b4a5c6e"
#define PHONE "+919876543210"

typedef struct vec {
	uint8_t key[32];
	char key_id[64];
	uint32_t version;
	/* The pairs' strings, NUL-terminated, in the order the page gives. */
	char ctx_key[KMS_CONTEXT_MAX_PAIRS][KMS_CONTEXT_KEY_MAX + 1];
	char ctx_value[KMS_CONTEXT_MAX_PAIRS][KMS_CONTEXT_VALUE_MAX + 1];
	size_t n_ctx;
	uint8_t value[KMS_PSEUDONYM_VALUE_MAX];
	size_t value_len;
	uint8_t message[MSG_CAP];
	size_t message_len;
	uint8_t mac[32];
	char pseudonym[KMS_PSEUDONYM_TEXT_SIZE];
} vec;

static vec vecs[MAX_VECS];
static size_t n_vecs;

static size_t unhex(const char *s, size_t n, uint8_t *out, size_t cap)
{
	assert_true(n % 2 == 0 && n / 2 <= cap);
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n / 2;
}

/* "keyhex:valuehex" into the next pair's two strings. */
static void vec_pair(vec *v, const char *value)
{
	const char *colon = strchr(value, ':');
	assert_non_null(colon);
	assert_true(v->n_ctx < KMS_CONTEXT_MAX_PAIRS);
	size_t k = unhex(value, (size_t)(colon - value), (uint8_t *)v->ctx_key[v->n_ctx],
	                 KMS_CONTEXT_KEY_MAX);
	size_t n = unhex(colon + 1, strlen(colon + 1), (uint8_t *)v->ctx_value[v->n_ctx],
	                 KMS_CONTEXT_VALUE_MAX);
	v->ctx_key[v->n_ctx][k] = '\0';
	v->ctx_value[v->n_ctx][n] = '\0';
	v->n_ctx++;
}

/* One "name = value" line of a pseudonym-vector block into v. */
static void vec_field(vec *v, const char *name, const char *value)
{
	size_t n = strlen(value);
	if (!strcmp(name, "key"))
		assert_int_equal(unhex(value, n, v->key, sizeof v->key), 32);
	else if (!strcmp(name, "key_id"))
		assert_true(snprintf(v->key_id, sizeof v->key_id, "%s", value) < 64);
	else if (!strcmp(name, "version"))
		v->version = (uint32_t)strtoul(value, NULL, 10);
	else if (!strcmp(name, "context_pair"))
		vec_pair(v, value);
	else if (!strcmp(name, "value"))
		v->value_len = unhex(value, n, v->value, sizeof v->value);
	else if (!strcmp(name, "message"))
		v->message_len = unhex(value, n, v->message, sizeof v->message);
	else if (!strcmp(name, "mac"))
		assert_int_equal(unhex(value, n, v->mac, sizeof v->mac), 32);
	else if (!strcmp(name, "pseudonym"))
		assert_true(snprintf(v->pseudonym, sizeof v->pseudonym, "%s", value) <
		            KMS_PSEUDONYM_TEXT_SIZE);
	else
		fail_msg("unknown field %s in a pseudonym-vector block", name);
}

static int load_doc(void **state)
{
	(void)state;
	FILE *f = fopen(KMS_PSEUDONYM_DOC, "r");
	if (!f)
		return -1;
	static char line[LINE_MAX_CHARS];
	vec *v = NULL;
	int rc = 0;
	while (rc == 0 && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!strcmp(line, "```pseudonym-vector")) {
			if (n_vecs == MAX_VECS) {
				rc = -1;
				break;
			}
			v = &vecs[n_vecs++];
			continue;
		}
		if (!v)
			continue;
		if (!strcmp(line, "```")) {
			v = NULL;
			continue;
		}
		char *eq = strstr(line, " = ");
		if (!eq) {
			rc = -1;
			break;
		}
		*eq = '\0';
		vec_field(v, line, eq + 3);
	}
	fclose(f);
	return rc == 0 && n_vecs >= 7 ? 0 : -1;
}

static size_t vec_pairs(const vec *v, context_pair pairs[static KMS_CONTEXT_MAX_PAIRS])
{
	for (size_t i = 0; i < v->n_ctx; i++)
		pairs[i] = context_pair_from_cstr(v->ctx_key[i], v->ctx_value[i]);
	return v->n_ctx;
}

static void hmac_sha256(const uint8_t key[32], const uint8_t *msg, size_t len, uint8_t out[32])
{
	unsigned out_len = 0;
	assert_non_null(HMAC(EVP_sha256(), key, 32, msg, len, out, &out_len));
	assert_int_equal(out_len, 32);
}

/* The message from the pairs, and again from a context encoded once. */
static void check_message(const vec *v, const context_pair *pairs, size_t n)
{
	static uint8_t out[MSG_CAP];
	size_t len = 99, ctx_len;
	uint8_t *ctx;

	assert_int_equal(pseudonym_message(pairs, n, v->value, v->value_len, out, sizeof out, &len),
	                 KMS_OK);
	assert_int_equal(len, v->message_len);
	assert_memory_equal(out, v->message, len);

	assert_int_equal(context_encode_alloc(pairs, n, &ctx, &ctx_len), KMS_OK);
	assert_int_equal(pseudonym_message_len(ctx_len, v->value_len), v->message_len);
	memset(out, 0xee, sizeof out);
	assert_int_equal(pseudonym_message_encoded(ctx, ctx_len, v->value, v->value_len, out,
	                                           v->message_len, &len),
	                 KMS_OK);
	assert_int_equal(len, v->message_len);
	assert_memory_equal(out, v->message, len);
	assert_int_equal(out[len], 0xee); /* nothing past the message */
	free(ctx);
	assert_true(pseudonym_domain_prefixed(out, len));
}

static void vectors_rebuilt(void **state)
{
	(void)state;
	for (size_t k = 0; k < n_vecs; k++) {
		const vec *v = &vecs[k];
		context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
		size_t n = vec_pairs(v, pairs);
		uint8_t mac[32];
		char text[KMS_PSEUDONYM_TEXT_SIZE], key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
		uint32_t version = 0;

		check_message(v, pairs, n);
		hmac_sha256(v->key, v->message, v->message_len, mac);
		assert_memory_equal(mac, v->mac, 32);
		assert_int_equal(pseudonym_format(v->key_id, v->version, mac, text), KMS_OK);
		assert_string_equal(text, v->pseudonym);
		assert_true(strlen(text) < KMS_PSEUDONYM_TEXT_SIZE);

		assert_int_equal(pseudonym_parse(text, key_short, &version), KMS_OK);
		assert_int_equal(version, v->version);
		assert_memory_equal(key_short, v->key_id + 2, 8);
		assert_int_equal(key_short[8], '\0');
	}
}

/* The page's promises, seen from C: the order of the pairs does not matter
 * (a vector with the same pairs in another order has the same pseudonym),
 * and the largest version makes the longest text. */
static void vectors_keep_promises(void **state)
{
	(void)state;
	size_t same = 0, longest = 0;
	for (size_t a = 0; a < n_vecs; a++) {
		if (strlen(vecs[a].pseudonym) == KMS_PSEUDONYM_TEXT_SIZE - 1) {
			assert_int_equal(vecs[a].version, UINT32_MAX);
			longest++;
		}
		for (size_t b = a + 1; b < n_vecs; b++) {
			if (strcmp(vecs[a].pseudonym, vecs[b].pseudonym) != 0)
				continue;
			assert_int_equal(vecs[a].n_ctx, vecs[b].n_ctx);
			assert_true(vecs[a].n_ctx > 1);
			assert_true(strcmp(vecs[a].ctx_key[0], vecs[b].ctx_key[0]) != 0);
			same++;
		}
	}
	assert_int_equal(same, 1);
	assert_int_equal(longest, 1);
}

static const context_pair one_pair[] = { { "purpose", 7, "kyc", 3 } };

static void value_lengths_bounded(void **state)
{
	(void)state;
	static uint8_t value[KMS_PSEUDONYM_VALUE_MAX + 1], out[MSG_CAP];
	size_t len = 99;
	memset(value, '7', sizeof value);

	for (size_t n = 0; n <= KMS_PSEUDONYM_VALUE_MAX + 1; n += KMS_PSEUDONYM_VALUE_MAX + 1) {
		char want[80];
		snprintf(want, sizeof want, "pseudonym: a value is %zu bytes, must be 1..1024", n);
		memset(out, 0xee, sizeof out);
		assert_int_equal(pseudonym_message(one_pair, 1, value, n, out, sizeof out, &len),
		                 KMS_INVALID_ARGUMENT);
		assert_string_equal(kms_error_message(), want);
		assert_int_equal(len, 0);
		assert_int_equal(out[0], 0xee); /* nothing written */
		assert_int_equal(pseudonym_message_encoded((const uint8_t *)"\0\0", 2, value, n,
		                                           out, sizeof out, &len),
		                 KMS_INVALID_ARGUMENT);
		assert_string_equal(kms_error_message(), want);
		assert_int_equal(pseudonym_check_value(n), KMS_INVALID_ARGUMENT);
		assert_int_equal(pseudonym_message_len(2, n), 0);
	}
	for (size_t n = 1; n <= KMS_PSEUDONYM_VALUE_MAX; n += KMS_PSEUDONYM_VALUE_MAX - 1) {
		assert_int_equal(pseudonym_check_value(n), KMS_OK);
		assert_int_equal(pseudonym_message(one_pair, 1, value, n, out, sizeof out, &len),
		                 KMS_OK);
		assert_int_equal(len, 17 + 4 + 16 + 4 + n);
	}
	assert_int_equal(pseudonym_message(NULL, 0, NULL, 5, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
}

/* A buffer one byte short is refused whole; the exact size is enough. */
static void buffer_bounded(void **state)
{
	(void)state;
	uint8_t out[64];
	size_t len = 99, want = 17 + 4 + 16 + 4 + strlen(PHONE);
	memset(out, 0xee, sizeof out);
	assert_int_equal(pseudonym_message(one_pair, 1, (const uint8_t *)PHONE, strlen(PHONE),
	                                   out, want - 1, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
	for (size_t i = 0; i < sizeof out; i++)
		assert_int_equal(out[i], 0xee);
	assert_int_equal(pseudonym_message(one_pair, 1, (const uint8_t *)PHONE, strlen(PHONE),
	                                   NULL, 0, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(pseudonym_message(one_pair, 1, (const uint8_t *)PHONE, strlen(PHONE),
	                                   out, want, &len),
	                 KMS_OK);
	assert_int_equal(len, want);
	assert_int_equal(out[want], 0xee);
	assert_memory_equal(out + want - strlen(PHONE), PHONE, strlen(PHONE));
}

/* A context that breaks the rules is refused, and no message names a value. */
static void bad_context_refused(void **state)
{
	(void)state;
	uint8_t out[MSG_CAP];
	size_t len = 99;
	const context_pair twice[] = { { "a", 1, PHONE, 13 }, { "a", 1, "x", 1 } };
	const context_pair nul[] = { { "a", 1, "9199\0", 5 } };
	const context_pair empty_key[] = { { "", 0, "x", 1 } };

	assert_int_equal(pseudonym_message(twice, 2, (const uint8_t *)PHONE, 13, out, sizeof out,
	                                   &len),
	                 KMS_INVALID_ARGUMENT);
	assert_null(strstr(kms_error_message(), PHONE));
	assert_int_equal(pseudonym_message(nul, 1, (const uint8_t *)PHONE, 13, out, sizeof out,
	                                   &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(pseudonym_message(empty_key, 1, (const uint8_t *)PHONE, 13, out,
	                                   sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(pseudonym_message(one_pair, KMS_CONTEXT_MAX_PAIRS + 1,
	                                   (const uint8_t *)PHONE, 13, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);

	/* An encoded context outside 2..KMS_CONTEXT_ENCODED_MAX, or missing. */
	const uint8_t enc[2] = { 0, 0 };
	assert_int_equal(pseudonym_message_encoded(enc, 1, (const uint8_t *)PHONE, 13, out,
	                                           sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(pseudonym_message_encoded(enc, KMS_CONTEXT_ENCODED_MAX + 1,
	                                           (const uint8_t *)PHONE, 13, out, sizeof out,
	                                           &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(pseudonym_message_encoded(NULL, 2, (const uint8_t *)PHONE, 13, out,
	                                           sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
	assert_int_equal(pseudonym_message_len(KMS_CONTEXT_ENCODED_MAX, KMS_PSEUDONYM_VALUE_MAX),
	                 KMS_PSEUDONYM_MESSAGE_MAX);
	assert_int_equal(KMS_PSEUDONYM_MESSAGE_MAX, 83227);
}

static void domain_prefix_predicate(void **state)
{
	(void)state;
	uint8_t msg[40];
	memset(msg, 'm', sizeof msg);
	memcpy(msg, KMS_PSEUDONYM_DOMAIN, KMS_PSEUDONYM_DOMAIN_LEN);

	assert_true(pseudonym_domain_prefixed(msg, 17));
	assert_true(pseudonym_domain_prefixed(msg, sizeof msg));
	assert_false(pseudonym_domain_prefixed(msg, 16)); /* without its 0x00 */
	assert_false(pseudonym_domain_prefixed(msg, 0));
	assert_false(pseudonym_domain_prefixed(NULL, 17));
	for (size_t i = 0; i < 17; i++) {
		msg[i] ^= 0x01;
		assert_false(pseudonym_domain_prefixed(msg, sizeof msg));
		msg[i] ^= 0x01;
	}
	assert_false(pseudonym_domain_prefixed((const uint8_t *)"kms-pseudonym-v1", 17 - 1));
	assert_false(pseudonym_domain_prefixed((const uint8_t *)"kms-pseudonym-v1x", 17));
	assert_false(pseudonym_domain_prefixed((const uint8_t *)"KMS-PSEUDONYM-V1", 17));
	/* The prefix anywhere but at the start is another message. */
	uint8_t later[18] = { 'x' };
	memcpy(later + 1, "kms-pseudonym-v1", 17);
	assert_false(pseudonym_domain_prefixed(later, sizeof later));
}

static void format_refusals(void **state)
{
	(void)state;
	uint8_t mac[32] = { 0 };
	char out[KMS_PSEUDONYM_TEXT_SIZE];
	static const char *bad_ids[] = {
		"",
		"k-",
		"k-3f2a9c1e5d7b48a09e6c1f2d3b4a5c6",   /* 31 digits */
		"k-3f2a9c1e5d7b48a09e6c1f2d3b4a5c6e0", /* 33 */
		"k-3F2A9C1E5D7B48A09E6C1F2D3B4A5C6E",  /* uppercase */
		"K-3f2a9c1e5d7b48a09e6c1f2d3b4a5c6e",
		"x-3f2a9c1e5d7b48a09e6c1f2d3b4a5c6e",
		"k-3f2a9c1g5d7b48a09e6c1f2d3b4a5c6e",
		"alias/payments",
		" k-3f2a9c1e5d7b48a09e6c1f2d3b4a5c6",
	};
	for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
		memset(out, 'x', sizeof out);
		assert_int_equal(pseudonym_format(bad_ids[i], 1, mac, out), KMS_INVALID_ARGUMENT);
		assert_string_equal(out, "");
		assert_string_equal(kms_error_message(),
		                    "pseudonym: a key id is k- and 32 lowercase hex digits");
	}
	assert_int_equal(pseudonym_format(NULL, 1, mac, out), KMS_INVALID_ARGUMENT);
	assert_int_equal(pseudonym_format(KEY_ID, 0, mac, out), KMS_INVALID_ARGUMENT);
	assert_string_equal(out, "");

	/* RFC 4648's alphabet at both ends: all zero bits, all one bits. */
	assert_int_equal(pseudonym_format(KEY_ID, 1, mac, out), KMS_OK);
	assert_string_equal(out, "kp_3f2a9c1e_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	memset(mac, 0xff, 20); /* only the first 20 bytes count */
	assert_int_equal(pseudonym_format(KEY_ID, 1, mac, out), KMS_OK);
	assert_string_equal(out, "kp_3f2a9c1e_1_77777777777777777777777777777777");
}

/* Every length of version: format, then parse back. */
static void versions_round_trip(void **state)
{
	(void)state;
	uint8_t mac[32];
	char out[KMS_PSEUDONYM_TEXT_SIZE], key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	for (size_t i = 0; i < sizeof mac; i++)
		mac[i] = (uint8_t)(i * 37 + 11);
	uint64_t versions[] = { 1, 9, 10, 99, 100, 999999999, 1000000000, UINT32_MAX - 1,
		                UINT32_MAX };
	for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
		uint32_t got = 0;
		char digits[16];
		int n = snprintf(digits, sizeof digits, "%" PRIu64, versions[i]);
		assert_int_equal(pseudonym_format(KEY_ID, (uint32_t)versions[i], mac, out), KMS_OK);
		assert_int_equal(strlen(out), KMS_PSEUDONYM_TEXT_MIN - 1 + (size_t)n);
		assert_int_equal(pseudonym_parse(out, key_short, &got), KMS_OK);
		assert_int_equal(got, versions[i]);
		assert_string_equal(key_short, "3f2a9c1e");
	}
}

#define B32 "kipx6krlhlsdzk2sx35vue66z7iapbb7"

static void parse_refusals(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",
		"kp_",
		"kp_3f2a9c1e_1_",
		"kp_3f2a9c1e_1_" B32 "a",           /* 33 base32 characters */
		"kp_3f2a9c1e_1_" "ipx6krlhlsdzk2sx35vue66z7iapbb7",  /* 31 */
		"kp_3f2a9c1e_1_" "KIPX6KRLHLSDZK2SX35VUE66Z7IAPBB7", /* uppercase */
		"kp_3f2a9c1e_1_" "kipx6krlhlsdzk2sx35vue66z7iapbb=",
		"kp_3f2a9c1e_1_" "kipx6krlhlsdzk2sx35vue66z7iapbb1", /* 1 is not base32 */
		"kp_3f2a9c1e_1_" "kipx6krlhlsdzk2sx35vue66z7iapbb8",
		"kp_3f2a9c1e_1_" "kipx6krlhlsdzk2sx35vue66z7iapbb0",
		"kp_3F2A9C1E_1_" B32,
		"kp_3f2a9c1_1_" B32,                /* 7 hex digits */
		"kp_3f2a9c1e0_1_" B32,              /* 9 */
		"kp_3f2a9c1g_1_" B32,
		"kp_3f2a9c1e_0_" B32,
		"kp_3f2a9c1e_01_" B32,
		"kp_3f2a9c1e_4294967296_" B32,
		"kp_3f2a9c1e_10000000000_" B32,
		"kp_3f2a9c1e_99999999999_" B32,
		"kp_3f2a9c1e_-1_" B32,
		"kp_3f2a9c1e_+1_" B32,
		"kp_3f2a9c1e_ 1_" B32,
		"kp_3f2a9c1e__" B32,
		"kp_3f2a9c1e_1_2_" B32,
		"kp_3f2a9c1e1_" B32 "x",
		"kp-3f2a9c1e_1_" B32,
		"KP_3f2a9c1e_1_" B32,
		"kq_3f2a9c1e_1_" B32,
		"xkp_3f2a9c1e_1_" B32,
		" kp_3f2a9c1e_1_" B32,
		"kp_3f2a9c1e_1_" B32 " ",
		"kp_3f2a9c1e_1_" B32 "\n",
		"kp_3f2a9c1e.1." B32,
		"kp_3f2a9c1e_१_" B32, /* a Devanagari digit */
		"kp_3f2a9c1e_1_" B32 "_kp_3f2a9c1e_1_" B32,
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE] = "xxxxxxxx";
		uint32_t version = 7;
		if (pseudonym_parse(bad[i], key_short, &version) != KMS_INVALID_ARGUMENT)
			fail_msg("bad text %zu was read as a pseudonym", i);
		assert_string_equal(key_short, "");
		assert_int_equal(version, 0);
		assert_null(strstr(kms_error_message(), "3f2a9c1e"));
	}
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t version;
	assert_int_equal(pseudonym_parse(NULL, key_short, &version), KMS_INVALID_ARGUMENT);
	assert_int_equal(pseudonym_parse("kp_3f2a9c1e_1_" B32, key_short, &version), KMS_OK);
	assert_int_equal(version, 1);
	assert_string_equal(key_short, "3f2a9c1e");
}

/* A text with no NUL in its first KMS_PSEUDONYM_TEXT_SIZE bytes is
 * refused without reading past them (the sanitizer lane would see it). */
static void parse_reads_bounded(void **state)
{
	(void)state;
	char *text = malloc(KMS_PSEUDONYM_TEXT_SIZE);
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t version;
	assert_non_null(text);
	memcpy(text, "kp_3f2a9c1e_1_" B32 "aaaaaaaaaa", KMS_PSEUDONYM_TEXT_SIZE);
	assert_int_equal(pseudonym_parse(text, key_short, &version), KMS_INVALID_ARGUMENT);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vectors_rebuilt),
		cmocka_unit_test(vectors_keep_promises),
		cmocka_unit_test(value_lengths_bounded),
		cmocka_unit_test(buffer_bounded),
		cmocka_unit_test(bad_context_refused),
		cmocka_unit_test(domain_prefix_predicate),
		cmocka_unit_test(format_refusals),
		cmocka_unit_test(versions_round_trip),
		cmocka_unit_test(parse_refusals),
		cmocka_unit_test(parse_reads_bounded),
	};
	return cmocka_run_group_tests(tests, load_doc, NULL);
}
