/*
 * Envelope encryption (kms/envelope.h, docs/envelope-format.md) against a
 * real kmsd: round trips of every size around the segment boundaries, fed
 * in odd chunks; every way of breaking a message (a header byte, a segment
 * byte, segments swapped, dropped, repeated, appended, a header from
 * another message) refused with the reason, and no plaintext of a segment
 * that does not verify ever reaching the write function; the required
 * context and key; a disabled key; the encryptor's size contract; a write
 * function that fails.
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

#include <kms/client.h>
#include <kms/envelope.h>
#include <kms/secmem.h>

#include "tests/support/harness.h"

#define P 4096u /* the smallest segment size: many segments from little data */

static harness H;
static kms_client *C;
static char key_id[KMS_KEY_ID_MAX + 1];
static char other_key[KMS_KEY_ID_MAX + 1];

static const kms_context_pair ctx[] = { { "purpose", "backup" }, { "tenant", "42" } };
static const kms_context_pair ctx_reordered[] = { { "tenant", "42" }, { "purpose", "backup" } };
static const kms_context_pair ctx_other[] = { { "purpose", "analytics" }, { "tenant", "42" } };

static bool make_key(const char *description, char *out)
{
	kms_create_key_params params = { .description = description };
	kms_key_metadata md;
	kms_error err;
	if (kms_create_key(C, &params, &md, &err) != KMS_OK) {
		fprintf(stderr, "create key: %s\n", err.message);
		return false;
	}
	snprintf(out, KMS_KEY_ID_MAX + 1, "%s", md.key_id);
	kms_key_metadata_free(&md);
	return true;
}

static int start(void **state)
{
	(void)state;
	harness_options o = { 0 };
	if (!harness_start(&H, &o))
		return -1;
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = 10000 };
	kms_error err;
	if (kms_client_open(&opts, &C, &err) != KMS_OK) {
		fprintf(stderr, "open: %s\n", err.message);
		return -1;
	}
	return make_key("envelopes", key_id) && make_key("another", other_key) ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	kms_client_close(C);
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d; log: %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

/* A growing output buffer; fail_after makes the write function fail once
 * that many bytes are in. */
typedef struct sink {
	uint8_t *bytes;
	size_t len, cap;
	size_t fail_after;
} sink;

static int sink_write(void *arg, const uint8_t *bytes, size_t len)
{
	sink *s = arg;
	if (s->fail_after && s->len + len > s->fail_after)
		return ENOSPC;
	if (len > s->cap - s->len) {
		size_t cap = (s->len + len) * 2;
		uint8_t *grown = realloc(s->bytes, cap);
		assert_non_null(grown);
		s->bytes = grown;
		s->cap = cap;
	}
	memcpy(s->bytes + s->len, bytes, len);
	s->len += len;
	return 0;
}

static void sink_free(sink *s)
{
	free(s->bytes);
	memset(s, 0, sizeof *s);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len + 1);
	assert_non_null(p);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 24);
	}
	return p;
}

/* Encrypts pt in chunks of `chunk` bytes into out. */
static void seal(const uint8_t *pt, size_t len, size_t chunk, uint32_t segment, sink *out)
{
	kms_envelope_encrypt_options o = { .segment_size = segment };
	kms_envelope_encryptor *enc = NULL;
	kms_error err;
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, ctx, 2, &o, sink_write, out, &enc,
	                                           &err), KMS_OK);
	assert_string_equal(kms_envelope_encryptor_key_id(enc), key_id);
	assert_int_equal(kms_envelope_encryptor_key_version(enc), 1);
	for (size_t at = 0; at < len; at += chunk) {
		size_t n = len - at < chunk ? len - at : chunk;
		assert_int_equal(kms_envelope_encrypt_update(enc, pt + at, n, &err), KMS_OK);
	}
	assert_int_equal(kms_envelope_encrypt_final(enc, &err), KMS_OK);
	/* Finished: only free is left. */
	assert_int_equal(kms_envelope_encrypt_final(enc, &err), KMS_FAILED_PRECONDITION);
	kms_envelope_encryptor_free(enc);
}

/* Decrypts msg in chunks; returns the status, the message in err, the
 * plaintext in out. */
static kms_status open_msg(const uint8_t *msg, size_t len, size_t chunk,
                           const kms_envelope_decrypt_options *o, sink *out, kms_error *err,
                           uint64_t *released)
{
	kms_envelope_decryptor *dec = NULL;
	kms_status st = kms_envelope_decrypt_init(C, o, sink_write, out, &dec, err);
	assert_int_equal(st, KMS_OK);
	for (size_t at = 0; st == KMS_OK && at < len; at += chunk) {
		size_t n = len - at < chunk ? len - at : chunk;
		st = kms_envelope_decrypt_update(dec, msg + at, n, err);
	}
	if (st == KMS_OK)
		st = kms_envelope_decrypt_final(dec, err);
	if (released)
		*released = kms_envelope_decryptor_released(dec);
	/* What was released is exactly what the write function took. */
	assert_int_equal(kms_envelope_decryptor_released(dec), out->len);
	if (st == KMS_OK) {
		assert_string_equal(kms_envelope_decryptor_key_id(dec), key_id);
		assert_int_equal(kms_envelope_decryptor_key_version(dec), 1);
	}
	kms_envelope_decryptor_free(dec);
	return st;
}

static void round_trips(void **state)
{
	(void)state;
	const size_t sizes[] = { 0, 1, P - 1, P, P + 1, 2 * P, 3 * P + 7, 3 << 20 };
	const size_t chunks[] = { 1, 7, P + 3, 65537, SIZE_MAX };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t len = sizes[s];
		uint8_t *pt = pattern(len, (unsigned)s);
		for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
			if (chunks[c] < 16 && len > 5 * P)
				continue; /* byte by byte through 3 MiB proves nothing more */
			uint32_t segment = (c % 2) ? P : 0;
			sink m = { 0 }, back = { 0 };
			kms_error err;
			seal(pt, len, chunks[c], segment, &m);
			assert_true(kms_envelope_is_message(m.bytes, m.len));
			size_t header = m.len - len -
			                KMS_ENVELOPE_TAG_LEN * (len == 0 ? 1 : (len + (segment ? segment : KMS_ENVELOPE_SEGMENT_DEFAULT) - 1) /
			                                                         (segment ? segment : KMS_ENVELOPE_SEGMENT_DEFAULT));
			assert_int_equal(kms_envelope_message_size(len, segment, header), m.len);
			assert_int_equal(open_msg(m.bytes, m.len, chunks[c], NULL, &back, &err, NULL),
			                 KMS_OK);
			assert_int_equal(back.len, len);
			if (len)
				assert_memory_equal(back.bytes, pt, len);
			sink_free(&m);
			sink_free(&back);
		}
		free(pt);
	}
}

static void buffers(void **state)
{
	(void)state;
	kms_error err;
	size_t len = 5 * P + 11;
	uint8_t *pt = pattern(len, 99), *msg = NULL, *back = NULL;
	size_t msg_len = 0, back_len = 0;
	kms_envelope_encrypt_options o = { .segment_size = P };
	assert_int_equal(kms_envelope_encrypt_buffer(C, key_id, ctx, 2, &o, pt, len, &msg,
	                                             &msg_len, &err), KMS_OK);
	assert_int_equal(kms_envelope_decrypt_buffer(C, NULL, msg, msg_len, &back, &back_len,
	                                             &err), KMS_OK);
	assert_int_equal(back_len, len);
	assert_memory_equal(back, pt, len);
	kms_secure_free(back);
	/* Two messages of the same plaintext differ (each its own data key,
	 * salt and prefix). */
	uint8_t *msg2 = NULL;
	size_t msg2_len = 0;
	assert_int_equal(kms_envelope_encrypt_buffer(C, key_id, ctx, 2, &o, pt, len, &msg2,
	                                             &msg2_len, &err), KMS_OK);
	assert_int_equal(msg2_len, msg_len);
	assert_memory_not_equal(msg2, msg, msg_len);
	/* A broken one gives nothing back. */
	msg[msg_len - 1] ^= 1;
	back = (uint8_t *)"untouched";
	assert_int_equal(kms_envelope_decrypt_buffer(C, NULL, msg, msg_len, &back, &back_len,
	                                             &err), KMS_INVALID_CIPHERTEXT);
	assert_null(back);
	assert_int_equal(back_len, 0);
	kms_free(msg);
	kms_free(msg2);
	free(pt);
	/* Sizes that do not fit in 64 bits saturate. */
	assert_int_equal(kms_envelope_message_size(UINT64_MAX - 10, 0, 100), UINT64_MAX);
	assert_int_equal(kms_envelope_message_size(UINT64_MAX / 2, 1, 0), UINT64_MAX);
	assert_int_equal(kms_envelope_message_size(0, 0, 200), 216);
}

/* A message of 4 segments (3 full and 7 bytes) at P = 4096. */
typedef struct fixture {
	uint8_t *pt;
	size_t pt_len;
	sink m;
	size_t header;
} fixture;

static void fixture_make_len(fixture *f, unsigned seed, size_t len)
{
	f->pt_len = len;
	f->pt = pattern(f->pt_len, seed);
	memset(&f->m, 0, sizeof f->m);
	seal(f->pt, f->pt_len, f->pt_len, P, &f->m);
	f->header = f->m.len - f->pt_len - (len + P - 1) / P * KMS_ENVELOPE_TAG_LEN;
}

static void fixture_make(fixture *f, unsigned seed)
{
	fixture_make_len(f, seed, 3 * P + 7);
}

static void fixture_free(fixture *f)
{
	free(f->pt);
	sink_free(&f->m);
}

static uint8_t *segment_at(fixture *f, size_t i)
{
	return f->m.bytes + f->header + i * (P + KMS_ENVELOPE_TAG_LEN);
}

/* msg must be refused with a message holding want; what the write function
 * got must be a prefix of the plaintext of whole verified segments. */
static void refused(fixture *f, const uint8_t *msg, size_t len, kms_status want_status,
                    const char *want, uint64_t want_released)
{
	const size_t chunks[] = { 1000, SIZE_MAX };
	for (size_t c = 0; c < 2; c++) {
		sink out = { 0 };
		kms_error err;
		uint64_t released = 0;
		kms_status st = open_msg(msg, len, chunks[c], NULL, &out, &err, &released);
		if (st != want_status || !strstr(err.message, want))
			fail_msg("want %s \"%s\", got %s \"%s\"", kms_status_name(want_status), want,
			         kms_status_name(st), err.message);
		assert_int_equal(released, want_released);
		assert_int_equal(released % P, 0);
		if (released)
			assert_memory_equal(out.bytes, f->pt, released);
		sink_free(&out);
	}
}

static void tampering(void **state)
{
	(void)state;
	fixture f, g;
	fixture_make(&f, 1);
	fixture_make(&g, 2);
	size_t full = P + KMS_ENVELOPE_TAG_LEN, len = f.m.len;
	uint8_t *b = malloc(len + 2 * full);
	assert_non_null(b);

	/* Header bytes: the fixed fields, the wrapped key, the context, the
	 * MAC. Each is refused before any plaintext. */
	struct {
		size_t off;
		const char *want;
	} header_cases[] = {
		{ 0, "not a kms envelope" },
		{ 8, "version" },
		{ 9, "suite" },
		{ 12, "header does not authenticate" },   /* segment size 4096 -> 4352 */
		{ 20, "header does not authenticate" },   /* salt */
		{ 50, "header does not authenticate" },   /* nonce prefix */
		{ f.header - 70, "cannot open the header's data key" }, /* the wrapped key's tag */
		{ f.header - 40, "cannot open the header's data key" }, /* the context */
		{ f.header - 1, "header does not authenticate" },       /* the MAC */
	};
	for (size_t i = 0; i < sizeof header_cases / sizeof header_cases[0]; i++) {
		memcpy(b, f.m.bytes, len);
		b[header_cases[i].off] ^= 0x01;
		refused(&f, b, len, KMS_INVALID_CIPHERTEXT, header_cases[i].want, 0);
	}

	/* A bit in segment 2: segments 0 and 1 were released, then the failure. */
	memcpy(b, f.m.bytes, len);
	b[f.header + 2 * full + 100] ^= 0x80;
	refused(&f, b, len, KMS_INVALID_CIPHERTEXT, "segment 2 does not authenticate", 2 * P);
	/* Its tag. */
	memcpy(b, f.m.bytes, len);
	b[f.header + 3 * full - 1] ^= 0x01;
	refused(&f, b, len, KMS_INVALID_CIPHERTEXT, "segment 2 does not authenticate", 2 * P);

	/* Segments 0 and 1 swapped. */
	memcpy(b, f.m.bytes, len);
	memcpy(b + f.header, segment_at(&f, 1), full);
	memcpy(b + f.header + full, segment_at(&f, 0), full);
	refused(&f, b, len, KMS_INVALID_CIPHERTEXT, "segment 0 does not authenticate", 0);

	/* Segment 1 removed. */
	memcpy(b, f.m.bytes, f.header + full);
	memcpy(b + f.header + full, segment_at(&f, 2), len - f.header - 2 * full);
	refused(&f, b, len - full, KMS_INVALID_CIPHERTEXT, "segment 1 does not authenticate", P);

	/* Segment 1 repeated. */
	memcpy(b, f.m.bytes, f.header + 2 * full);
	memcpy(b + f.header + 2 * full, segment_at(&f, 1), len - f.header - full);
	refused(&f, b, len + full, KMS_INVALID_CIPHERTEXT, "segment 2 does not authenticate",
	        2 * P);

	/* Cut after segment 2 (a boundary): segment 2 is not the last. */
	refused(&f, f.m.bytes, f.header + 3 * full, KMS_INVALID_CIPHERTEXT, "truncated", 2 * P);
	/* Cut after segment 0. */
	refused(&f, f.m.bytes, f.header + full, KMS_INVALID_CIPHERTEXT, "truncated", 0);
	/* Cut inside the last segment, inside its tag, and to just the header. */
	refused(&f, f.m.bytes, len - 3, KMS_INVALID_CIPHERTEXT, "segment 3", 3 * P);
	refused(&f, f.m.bytes, f.header + 3 * full + 5, KMS_INVALID_CIPHERTEXT, "truncated",
	        3 * P);
	refused(&f, f.m.bytes, f.header, KMS_INVALID_CIPHERTEXT, "truncated", 0);
	refused(&f, f.m.bytes, f.header - 1, KMS_INVALID_CIPHERTEXT, "inside its header", 0);
	refused(&f, f.m.bytes, 20, KMS_INVALID_CIPHERTEXT, "inside its header", 0);

	/* Bytes after the end: one byte (it joins the short last segment),
	 * and a whole segment of another message. */
	memcpy(b, f.m.bytes, len);
	b[len] = 0;
	refused(&f, b, len + 1, KMS_INVALID_CIPHERTEXT, "segment 3 does not authenticate", 3 * P);
	memcpy(b, f.m.bytes, f.header + 3 * full);
	memcpy(b + f.header + 3 * full, segment_at(&g, 0), full);
	memcpy(b + f.header + 4 * full, segment_at(&f, 3), 7 + KMS_ENVELOPE_TAG_LEN);
	refused(&f, b, len + full, KMS_INVALID_CIPHERTEXT, "segment 3", 3 * P);
	/* A segment from another message in its place. */
	memcpy(b, f.m.bytes, len);
	memcpy(b + f.header + full, segment_at(&g, 1), full);
	refused(&f, b, len, KMS_INVALID_CIPHERTEXT, "segment 1 does not authenticate", P);
	/* Another message's header on this body (same length: same key, same
	 * context). */
	assert_int_equal(g.header, f.header);
	memcpy(b, g.m.bytes, g.header);
	memcpy(b + f.header, f.m.bytes + f.header, len - f.header);
	refused(&f, b, len, KMS_INVALID_CIPHERTEXT, "segment 0 does not authenticate", 0);

	/* A message whose last segment is full, with bytes after it: that
	 * segment verifies as the last, and the reader says so. */
	fixture e;
	fixture_make_len(&e, 5, 2 * P);
	size_t elen = e.m.len;
	uint8_t *eb = malloc(elen + 1);
	assert_non_null(eb);
	memcpy(eb, e.m.bytes, elen);
	eb[elen] = 'x';
	refused(&e, eb, elen + 1, KMS_INVALID_CIPHERTEXT, "bytes follow the end", P);
	free(eb);
	fixture_free(&e);

	/* Not an envelope at all; empty input. */
	refused(&f, (const uint8_t *)"KMS\x01 a ciphertext blob, not an envelope", 39,
	        KMS_INVALID_CIPHERTEXT, "not a kms envelope", 0);
	refused(&f, (const uint8_t *)"", 0, KMS_INVALID_CIPHERTEXT, "empty", 0);

	free(b);
	fixture_free(&f);
	fixture_free(&g);
}

static void required_context_and_key(void **state)
{
	(void)state;
	fixture f;
	fixture_make(&f, 3);
	kms_error err;
	sink out = { 0 };

	kms_envelope_decrypt_options o = { .require_context = true, .context = ctx_reordered,
	                                   .n_context = 2, .key_id = key_id };
	assert_int_equal(open_msg(f.m.bytes, f.m.len, SIZE_MAX, &o, &out, &err, NULL), KMS_OK);
	assert_int_equal(out.len, f.pt_len);
	sink_free(&out);

	o.context = ctx_other;
	assert_int_equal(open_msg(f.m.bytes, f.m.len, SIZE_MAX, &o, &out, &err, NULL),
	                 KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "encryption context is not the one required"));
	assert_non_null(strstr(err.message, "purpose, tenant"));
	assert_null(strstr(err.message, "backup")); /* values are not repeated */
	assert_int_equal(out.len, 0);

	o.n_context = 0; /* required: empty; the message has two pairs */
	assert_int_equal(open_msg(f.m.bytes, f.m.len, SIZE_MAX, &o, &out, &err, NULL),
	                 KMS_INVALID_ARGUMENT);

	/* Not required: the message's context is there to read once its
	 * header is in (and not before). */
	kms_envelope_decryptor *dec = NULL;
	const kms_context_pair *got = (const kms_context_pair *)ctx;
	assert_int_equal(kms_envelope_decrypt_init(C, NULL, sink_write, &out, &dec, &err), KMS_OK);
	assert_int_equal(kms_envelope_decryptor_context(dec, &got), 0);
	assert_null(got);
	assert_int_equal(kms_envelope_decrypt_update(dec, f.m.bytes, f.m.len, &err), KMS_OK);
	assert_int_equal(kms_envelope_decryptor_context(dec, &got), 2);
	assert_string_equal(got[0].key, "purpose");
	assert_string_equal(got[0].value, "backup");
	assert_string_equal(got[1].key, "tenant");
	assert_string_equal(got[1].value, "42");
	assert_int_equal(kms_envelope_decrypt_final(dec, &err), KMS_OK);
	kms_envelope_decryptor_free(dec);
	sink_free(&out);

	kms_envelope_decrypt_options k = { .key_id = other_key };
	assert_int_not_equal(open_msg(f.m.bytes, f.m.len, SIZE_MAX, &k, &out, &err, NULL),
	                     KMS_OK);
	assert_int_equal(out.len, 0);
	fixture_free(&f);
}

static void disabled_key(void **state)
{
	(void)state;
	fixture f;
	fixture_make(&f, 4);
	kms_error err;
	sink out = { 0 };
	kms_envelope_encryptor *enc = (kms_envelope_encryptor *)&out;

	assert_int_equal(kms_disable_key(C, key_id, &err), KMS_OK);
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, ctx, 2, NULL, sink_write, &out, &enc,
	                                           &err), KMS_FAILED_PRECONDITION);
	assert_null(enc);
	assert_int_equal(out.len, 0); /* no header written */
	assert_int_equal(open_msg(f.m.bytes, f.m.len, SIZE_MAX, NULL, &out, &err, NULL),
	                 KMS_FAILED_PRECONDITION);
	assert_int_equal(out.len, 0);
	assert_int_equal(kms_enable_key(C, key_id, &err), KMS_OK);
	assert_int_equal(open_msg(f.m.bytes, f.m.len, SIZE_MAX, NULL, &out, &err, NULL), KMS_OK);
	sink_free(&out);

	/* No such key: refused before any byte is written. */
	assert_int_equal(kms_envelope_encrypt_init(C, "alias/none-such", ctx, 2, NULL, sink_write,
	                                           &out, &enc, &err), KMS_NOT_FOUND);
	assert_int_equal(out.len, 0);
	fixture_free(&f);
}

static void encryptor_contract(void **state)
{
	(void)state;
	kms_error err;
	sink out = { 0 };
	kms_envelope_encryptor *enc = NULL;
	uint8_t bytes[100] = { 0 };

	/* An announced size is held to. */
	kms_envelope_encrypt_options o = { .size_known = true, .size = 50 };
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, NULL, 0, &o, sink_write, &out, &enc,
	                                           &err), KMS_OK);
	assert_int_equal(kms_envelope_encrypt_update(enc, bytes, 51, &err), KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_envelope_encrypt_update(enc, bytes, 1, &err),
	                 KMS_FAILED_PRECONDITION);
	kms_envelope_encryptor_free(enc);
	sink_free(&out);
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, NULL, 0, &o, sink_write, &out, &enc,
	                                           &err), KMS_OK);
	assert_int_equal(kms_envelope_encrypt_update(enc, bytes, 49, &err), KMS_OK);
	assert_int_equal(kms_envelope_encrypt_final(enc, &err), KMS_INVALID_ARGUMENT);
	kms_envelope_encryptor_free(enc);
	sink_free(&out);

	/* Segment sizes out of range; a context that breaks a rule. */
	o = (kms_envelope_encrypt_options){ .segment_size = KMS_ENVELOPE_SEGMENT_MIN - 1 };
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, NULL, 0, &o, sink_write, &out, &enc,
	                                           &err), KMS_INVALID_ARGUMENT);
	o.segment_size = KMS_ENVELOPE_SEGMENT_MAX + 1;
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, NULL, 0, &o, sink_write, &out, &enc,
	                                           &err), KMS_INVALID_ARGUMENT);
	const kms_context_pair dup[] = { { "a", "1" }, { "a", "2" } };
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, dup, 2, NULL, sink_write, &out, &enc,
	                                           &err), KMS_INVALID_ARGUMENT);
	assert_int_equal(out.len, 0);

	/* A write function that fails: the call fails with its errno's text. */
	out.fail_after = 5000;
	assert_int_equal(kms_envelope_encrypt_init(C, key_id, NULL, 0, NULL, sink_write, &out, &enc,
	                                           &err), KMS_OK);
	uint8_t *big = pattern(3 * KMS_ENVELOPE_SEGMENT_DEFAULT, 5);
	kms_status st = kms_envelope_encrypt_update(enc, big, 3 * KMS_ENVELOPE_SEGMENT_DEFAULT, &err);
	assert_int_equal(st, KMS_INTERNAL);
	assert_non_null(strstr(err.message, strerror(ENOSPC)));
	kms_envelope_encryptor_free(enc);
	free(big);
	sink_free(&out);
}

/* With a data-key cache on both sides: 20 messages at max_messages 5 make
 * 4 GenerateDataKey and 4 Decrypt calls; every message still has its own
 * salt and nonce prefix, so no two are alike. */
static void with_cache(void **state)
{
	(void)state;
	kms_error err;
	kms_data_key_cache *enc_cache = NULL, *dec_cache = NULL;
	kms_data_key_cache_limits lim = { .max_age_ms = 600000, .max_messages = 5,
	                                  .max_bytes = 1u << 30 };
	assert_int_equal(kms_data_key_cache_new(C, &lim, &enc_cache, &err), KMS_OK);
	assert_int_equal(kms_data_key_cache_new(C, &lim, &dec_cache, &err), KMS_OK);
	uint8_t *pt = pattern(1000, 7);
	uint8_t *msgs[20];
	size_t lens[20];
	kms_envelope_encrypt_options eo = { .cache = enc_cache };
	for (size_t i = 0; i < 20; i++)
		assert_int_equal(kms_envelope_encrypt_buffer(C, key_id, ctx, 2, &eo, pt, 1000,
		                                             &msgs[i], &lens[i], &err), KMS_OK);
	kms_data_key_cache_stats st;
	kms_data_key_cache_stats_get(enc_cache, &st);
	assert_int_equal(st.generate_calls, 4);
	assert_int_equal(st.hits, 16);
	for (size_t i = 1; i < 20; i++) {
		assert_int_equal(lens[i], lens[0]);
		assert_memory_not_equal(msgs[i] + 14, msgs[i - 1] + 14, 32 + 7); /* salt, prefix */
	}
	/* Messages 0..4 share one wrapped key, 5..9 the next: opened with a
	 * cache, each group costs one Decrypt. */
	kms_envelope_decrypt_options dopt = { .cache = dec_cache };
	for (size_t i = 0; i < 20; i++) {
		uint8_t *back = NULL;
		size_t back_len = 0;
		assert_int_equal(kms_envelope_decrypt_buffer(C, &dopt, msgs[i], lens[i], &back,
		                                             &back_len, &err), KMS_OK);
		assert_int_equal(back_len, 1000);
		assert_memory_equal(back, pt, 1000);
		kms_secure_free(back);
		kms_free(msgs[i]);
	}
	kms_data_key_cache_stats_get(dec_cache, &st);
	assert_int_equal(st.decrypt_calls, 4);

	/* A cache belongs to the client it was made on. */
	kms_client *other = NULL;
	const char *endpoints[] = { H.ipc_url };
	kms_client_options copts = { .endpoints = endpoints, .n_endpoints = 1,
	                             .timeout_ms = 10000 };
	assert_int_equal(kms_client_open(&copts, &other, &err), KMS_OK);
	/* One answered call first, so that the client is connected before it
	 * closes: NNG 1.5.2 leaks a dialer closed while its first connection
	 * is still being set up (the sanitizer lane caught it here). */
	kms_health health;
	assert_int_equal(kms_health_check(other, &health, &err), KMS_OK);
	kms_health_free(&health);
	uint8_t *m = NULL;
	size_t m_len = 0;
	assert_int_equal(kms_envelope_encrypt_buffer(other, key_id, ctx, 2, &eo, pt, 1000, &m,
	                                             &m_len, &err), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "another client"));
	kms_client_close(other);

	kms_data_key_cache_free(enc_cache);
	kms_data_key_cache_free(dec_cache);
	free(pt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trips),
		cmocka_unit_test(buffers),
		cmocka_unit_test(tampering),
		cmocka_unit_test(required_context_and_key),
		cmocka_unit_test(disabled_key),
		cmocka_unit_test(encryptor_contract),
		cmocka_unit_test(with_cache),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
