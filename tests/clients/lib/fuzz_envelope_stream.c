/*
 * fuzz_envelope_stream: the streaming decryptor (clients/lib/envelope.c,
 * kms_envelope_decrypt_init/update/final) over damaged and arbitrary
 * messages, without kmsd.
 *
 * The seam: this file is linked with -Wl,--wrap for kms_generate_data_key,
 * kms_decrypt and RAND_bytes (tests/clients/lib/CMakeLists.txt), so the
 * references envelope.c makes to them land here: a fixed data key stands
 * in for kmsd (a blob other than the one it "made" is refused, as kmsd
 * would), and the salt and nonce prefix come from the input, so a crash
 * replays. envelope.c itself is the production code, unchanged; the client
 * handle is never looked at by it once both calls are wrapped.
 *
 * Input: a mode byte, then
 *   even (sealed): a segment-size byte (4096 or 8192), a u16 BE plaintext
 *     length (mod 3 segments + 100), a context byte (none, one or two
 *     pairs, required or not), 8 salt bytes, then up to 8 edits of 6 bytes
 *     (op, u32 BE position, value) applied to the real message: flip a
 *     byte, cut it there, insert a byte, delete a byte, swap the segment
 *     there with the next, repeat it; the rest of the input chooses the
 *     sizes of the chunks the message is fed in;
 *   odd (raw): a chunk-size byte, then a message. When its header parses,
 *     its MAC is recomputed with the fixed data key, so the segment reader
 *     behind the header is reached with arbitrary bytes.
 *
 * Invariants:
 *   - whatever the decryptor writes is a prefix of the plaintext (sealed
 *     mode): nothing unauthenticated or altered is ever released;
 *   - the unedited message decrypts to exactly the plaintext, with its
 *     context, whatever the chunking; a message that decrypts is the
 *     unedited one, byte for byte (the edits cannot be forged);
 *   - fed in chunks or in one piece, the status, the bytes released and the
 *     error line are the same;
 *   - a failure is KMS_INVALID_CIPHERTEXT (KMS_INVALID_ARGUMENT for a
 *     required context the message does not hold), its message one line of
 *     printable ASCII with no byte of the data key in it;
 *   - after a failure the decryptor refuses more input.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <kms/client.h>
#include <kms/envelope.h>
#include <kms/secmem.h>

#include "clients/lib/envelope_format.h"
#include "tests/support/fuzz.h"

#define SEGMENTS_MAX 3
#define PLAIN_MAX (SEGMENTS_MAX * 8192 + 100)
#define MESSAGE_MAX (KMS_ENVELOPE_HEADER_FIXED + ENV_WRAPPED_MAX + 256 + PLAIN_MAX + \
                     (SEGMENTS_MAX + 2) * ENV_TAG_LEN + 64)
#define EDITS_MAX 8
#define FAKE_BLOB_LEN 80
#define FAKE_KEY_ID "00000000-0000-4000-8000-00000000f022"

/* The stand-in for kmsd: one data key, one blob. */
static const uint8_t data_key[ENV_KEY_LEN] = {
	0x6b, 0x6d, 0x73, 0x20, 0x66, 0x75, 0x7a, 0x7a, 0x20, 0x64, 0x61, 0x74, 0x61, 0x20, 0x6b, 0x65,
	0x79, 0x20, 0x6e, 0x6f, 0x74, 0x20, 0x61, 0x20, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x21, 0x0a,
};
static uint8_t fake_blob[FAKE_BLOB_LEN];
static bool accept_any_blob; /* raw mode: whatever blob the header holds */
static uint8_t rand_seed[8];
static unsigned rand_calls;
static char fake_client_storage[64];
#define FAKE_CLIENT ((kms_client *)(void *)fake_client_storage)

kms_status __wrap_kms_generate_data_key(kms_client *client, const char *key_id,
                                        const kms_context_pair *context, size_t n_context,
                                        kms_data_key *out, kms_error *err);
kms_status __wrap_kms_decrypt(kms_client *client, const uint8_t *blob, size_t blob_len,
                              const kms_context_pair *context, size_t n_context,
                              const char *key_id, kms_plaintext *out, kms_error *err);
int __wrap_RAND_bytes(unsigned char *buf, int num);

kms_status __wrap_kms_generate_data_key(kms_client *client, const char *key_id,
                                        const kms_context_pair *context, size_t n_context,
                                        kms_data_key *out, kms_error *err)
{
	(void)key_id, (void)context, (void)n_context, (void)err;
	FUZZ_CHECK(client == FAKE_CLIENT);
	memset(out, 0, sizeof *out);
	out->plaintext = kms_secure_alloc(ENV_KEY_LEN);
	out->blob = malloc(FAKE_BLOB_LEN);
	FUZZ_CHECK(out->plaintext && out->blob);
	memcpy(out->plaintext, data_key, ENV_KEY_LEN);
	out->plaintext_len = ENV_KEY_LEN;
	memcpy(out->blob, fake_blob, FAKE_BLOB_LEN);
	out->blob_len = FAKE_BLOB_LEN;
	strcpy(out->key_id, FAKE_KEY_ID);
	out->key_version = 1;
	return KMS_OK;
}

kms_status __wrap_kms_decrypt(kms_client *client, const uint8_t *blob, size_t blob_len,
                              const kms_context_pair *context, size_t n_context,
                              const char *key_id, kms_plaintext *out, kms_error *err)
{
	(void)context, (void)n_context, (void)key_id;
	FUZZ_CHECK(client == FAKE_CLIENT);
	memset(out, 0, sizeof *out);
	if (!accept_any_blob && (blob_len != FAKE_BLOB_LEN || memcmp(blob, fake_blob, blob_len))) {
		err->status = KMS_INVALID_CIPHERTEXT;
		err->origin = KMS_ERROR_SERVER;
		strcpy(err->message, "the ciphertext does not authenticate");
		return KMS_INVALID_CIPHERTEXT;
	}
	out->bytes = kms_secure_alloc(ENV_KEY_LEN);
	FUZZ_CHECK(out->bytes);
	memcpy(out->bytes, data_key, ENV_KEY_LEN);
	out->len = ENV_KEY_LEN;
	strcpy(out->key_id, FAKE_KEY_ID);
	out->key_version = 1;
	return KMS_OK;
}

/* The salt and the nonce prefix: from the input, so a run replays. */
int __wrap_RAND_bytes(unsigned char *buf, int num)
{
	for (int i = 0; i < num; i++)
		buf[i] = (unsigned char)(rand_seed[i % sizeof rand_seed] + 37 * (unsigned)i +
		                         101 * rand_calls);
	rand_calls++;
	return 1;
}

/* ---- input ---- */

typedef struct input {
	const uint8_t *p;
	size_t left;
} input;

static uint8_t take_u8(input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static uint32_t take_be(input *in, unsigned bytes)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < bytes; i++)
		v = v << 8 | take_u8(in);
	return v;
}

/* ---- output ---- */

typedef struct sink {
	uint8_t *bytes;
	size_t len, cap;
} sink;

static int sink_write(void *arg, const uint8_t *bytes, size_t len)
{
	sink *s = arg;
	FUZZ_CHECK(len > 0 && len <= s->cap - s->len);
	memcpy(s->bytes + s->len, bytes, len);
	s->len += len;
	return 0;
}

static void check_message(const kms_error *err, kms_status st)
{
	FUZZ_CHECK(err->status == st && err->message[0]);
	for (const char *p = err->message; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	/* No run of the data key's bytes in it (it is printable here, so look). */
	FUZZ_CHECK(!strstr(err->message, "kms fuzz data key"));
}

typedef struct outcome {
	kms_status st;
	size_t released;
	char message[KMS_ERROR_MESSAGE_MAX];
	size_t n_context;
} outcome;

static const kms_context_pair context_table[] = {
	{ "tenant", "acme" },
	{ "purpose", "fuzz \xc3\xa9t\xc3\xa9" },
};

typedef struct run_opts {
	size_t n_context;
	bool require_context;
	bool wrong_context;
	const uint8_t *chunks;   /* chunk sizes, cycled; NULL: one piece */
	size_t n_chunks;
} run_opts;

static size_t chunk_at(const run_opts *o, size_t i)
{
	size_t c = o->chunks[i % o->n_chunks];
	/* Mostly small, sometimes a segment and more. */
	return c < 0xf0 ? c + 1 : (size_t)(c - 0xef) * 4099;
}

/* Feeds message[0..len) to a decryptor, in chunks or in one piece. */
static void decrypt(const uint8_t *message, size_t len, const run_opts *o, sink *out,
                    outcome *res)
{
	kms_envelope_decrypt_options opts = { 0 };
	kms_context_pair want[2] = { context_table[0], context_table[1] };
	if (o->wrong_context)
		want[0].value = "acme2";
	opts.require_context = o->require_context;
	opts.context = want;
	opts.n_context = o->n_context;
	kms_envelope_decryptor *dec = NULL;
	kms_error err = { 0 };
	out->len = 0;
	kms_status st = kms_envelope_decrypt_init(FAKE_CLIENT, &opts, sink_write, out, &dec, &err);
	FUZZ_CHECK(st == KMS_OK && dec);
	size_t at = 0;
	for (size_t i = 0; st == KMS_OK && at < len; i++) {
		size_t n = o->chunks ? chunk_at(o, i) : len;
		if (n > len - at)
			n = len - at;
		st = kms_envelope_decrypt_update(dec, message + at, n, &err);
		at += n;
		FUZZ_CHECK(kms_envelope_decryptor_released(dec) == out->len);
	}
	if (st == KMS_OK)
		st = kms_envelope_decrypt_final(dec, &err);
	FUZZ_CHECK(kms_envelope_decryptor_released(dec) == out->len);
	res->st = st;
	res->released = out->len;
	res->message[0] = '\0';
	res->n_context = 0;
	if (st != KMS_OK) {
		FUZZ_CHECK(st == KMS_INVALID_CIPHERTEXT ||
		           (st == KMS_INVALID_ARGUMENT && o->require_context));
		check_message(&err, st);
		memcpy(res->message, err.message, sizeof res->message);
		/* Failed: only free is left. */
		uint8_t one = 0;
		kms_error again = { 0 };
		FUZZ_CHECK(kms_envelope_decrypt_update(dec, &one, 1, &again) ==
		           KMS_FAILED_PRECONDITION);
	} else {
		const kms_context_pair *pairs = NULL;
		res->n_context = kms_envelope_decryptor_context(dec, &pairs);
		FUZZ_CHECK(strcmp(kms_envelope_decryptor_key_id(dec), FAKE_KEY_ID) == 0);
	}
	kms_envelope_decryptor_free(dec);
}

/* Both ways, and they agree. */
static void decrypt_twice(const uint8_t *message, size_t len, run_opts *o, sink *out,
                          outcome *res)
{
	outcome whole;
	const uint8_t *chunks = o->chunks;
	o->chunks = NULL;
	decrypt(message, len, o, out, &whole);
	o->chunks = chunks;
	if (!o->n_chunks) {
		*res = whole;
		return;
	}
	decrypt(message, len, o, out, res);
	FUZZ_CHECK(res->st == whole.st && res->released == whole.released);
	FUZZ_CHECK(strcmp(res->message, whole.message) == 0);
}

/* ---- sealed mode ---- */

static int grow_write(void *arg, const uint8_t *bytes, size_t len)
{
	sink *s = arg;
	FUZZ_CHECK(len <= s->cap - s->len);
	memcpy(s->bytes + s->len, bytes, len);
	s->len += len;
	return 0;
}

static size_t encrypt(const uint8_t *plain, size_t len, uint32_t segment, size_t n_context,
                      uint8_t *message)
{
	kms_envelope_encrypt_options opts = { .segment_size = segment };
	kms_envelope_encryptor *enc = NULL;
	kms_error err = { 0 };
	sink s = { message, 0, MESSAGE_MAX };
	FUZZ_CHECK(kms_envelope_encrypt_init(FAKE_CLIENT, FAKE_KEY_ID, context_table, n_context,
	                                     &opts, grow_write, &s, &enc, &err) == KMS_OK);
	FUZZ_CHECK(kms_envelope_encrypt_update(enc, plain, len, &err) == KMS_OK);
	FUZZ_CHECK(kms_envelope_encrypt_final(enc, &err) == KMS_OK);
	kms_envelope_encryptor_free(enc);
	return s.len;
}

enum edit_op { EDIT_FLIP, EDIT_CUT, EDIT_INSERT, EDIT_DELETE, EDIT_SWAP, EDIT_REPEAT, EDIT_OPS };

/* One edit of message[0..*len) (room for MESSAGE_MAX). */
static void edit(uint8_t *message, size_t *len, size_t header_len, uint32_t segment,
                 unsigned op, uint32_t where, uint8_t value)
{
	size_t sealed = (size_t)segment + ENV_TAG_LEN;
	if (*len == 0)
		return;
	size_t at = where % *len;
	switch (op % EDIT_OPS) {
	case EDIT_FLIP:
		message[at] ^= value ? value : 1;
		break;
	case EDIT_CUT:
		*len = at;
		break;
	case EDIT_INSERT:
		if (*len < MESSAGE_MAX) {
			memmove(message + at + 1, message + at, *len - at);
			message[at] = value;
			(*len)++;
		}
		break;
	case EDIT_DELETE:
		memmove(message + at, message + at + 1, *len - at - 1);
		(*len)--;
		break;
	default: {
		/* Whole segments: the one at where and the next (or a copy). */
		size_t body = *len > header_len ? *len - header_len : 0;
		size_t n = body / sealed;
		if (n == 0)
			break;
		size_t k = where % n;
		uint8_t *a = message + header_len + k * sealed;
		if (op % EDIT_OPS == EDIT_SWAP && k + 1 < n) {
			static uint8_t tmp[8192 + ENV_TAG_LEN];
			uint8_t *b = a + sealed;
			memcpy(tmp, a, sealed);
			memcpy(a, b, sealed);
			memcpy(b, tmp, sealed);
		} else if (op % EDIT_OPS == EDIT_REPEAT && *len + sealed <= MESSAGE_MAX) {
			memmove(a + sealed, a, *len - (size_t)(a - message));
			*len += sealed;
		}
		break;
	}
	}
}

static void fuzz_sealed(input *in)
{
	static uint8_t plain[PLAIN_MAX];
	static uint8_t original[MESSAGE_MAX];
	static uint8_t message[MESSAGE_MAX];
	static uint8_t out_bytes[MESSAGE_MAX];

	uint32_t segment = (take_u8(in) & 1) ? 8192 : 4096;
	size_t len = take_be(in, 2) % (SEGMENTS_MAX * segment + 100);
	uint8_t ctx = take_u8(in);
	run_opts o = { .n_context = ctx % 3 };
	o.require_context = ctx & 4;
	o.wrong_context = o.require_context && o.n_context && (ctx & 8);
	for (size_t i = 0; i < sizeof rand_seed; i++)
		rand_seed[i] = take_u8(in);
	for (size_t i = 0; i < len; i++)
		plain[i] = (uint8_t)(i * 131 + rand_seed[0] + (i >> 8));

	size_t original_len = encrypt(plain, len, segment, o.n_context, original);
	size_t header_len = env_header_size(FAKE_BLOB_LEN, 0);
	{
		size_t total = 0;
		const char *why = NULL;
		FUZZ_CHECK(env_header_length(original, original_len, &total, &why) == KMS_OK);
		header_len = total;
	}
	FUZZ_CHECK(original_len == kms_envelope_message_size(len, segment, header_len));

	memcpy(message, original, original_len);
	size_t message_len = original_len;
	unsigned n_edits = take_u8(in) % (EDITS_MAX + 1);
	for (unsigned i = 0; i < n_edits; i++) {
		uint8_t op = take_u8(in);
		uint32_t where = take_be(in, 4);
		uint8_t value = take_u8(in);
		edit(message, &message_len, header_len, segment, op, where, value);
	}
	o.chunks = in->p;
	o.n_chunks = in->left;

	sink out = { out_bytes, 0, sizeof out_bytes };
	outcome res;
	decrypt_twice(message, message_len, &o, &out, &res);

	/* Nothing released that is not the plaintext's next bytes. */
	FUZZ_CHECK(res.released <= len && memcmp(out_bytes, plain, res.released) == 0);
	bool same = message_len == original_len && memcmp(message, original, original_len) == 0;
	if (res.st == KMS_OK) {
		FUZZ_CHECK(same);
		FUZZ_CHECK(res.released == len && res.n_context == o.n_context);
	} else if (same) {
		FUZZ_CHECK(o.wrong_context && res.st == KMS_INVALID_ARGUMENT && res.released == 0);
	}
}

/* ---- raw mode ---- */

/* When the header parses, signs it with the fixed data key in place. */
static void resign_header(uint8_t *message, size_t len)
{
	size_t total = 0;
	const char *why = NULL;
	env_header h;
	if (env_header_length(message, len, &total, &why) != KMS_OK || total == 0 || total > len ||
	    env_header_parse(message, total, &h, &why) != KMS_OK)
		return;
	uint8_t key[ENV_KEY_LEN];
	FUZZ_CHECK(env_derive_header_key(data_key, h.salt, key));
	FUZZ_CHECK(env_header_mac(key, message, total, message + total - ENV_MAC_LEN));
}

static void fuzz_raw(input *in)
{
	static uint8_t message[MESSAGE_MAX];
	static uint8_t out_bytes[MESSAGE_MAX];
	uint8_t chunk = take_u8(in);
	size_t len = in->left < sizeof message ? in->left : sizeof message;
	memcpy(message, in->p, len);
	resign_header(message, len);

	run_opts o = { .chunks = &chunk, .n_chunks = 1 };
	sink out = { out_bytes, 0, len };
	outcome res;
	accept_any_blob = true;
	decrypt_twice(message, len, &o, &out, &res);
	accept_any_blob = false;
	/* The plaintext is shorter than the message. */
	FUZZ_CHECK(res.released < len || (len == 0 && res.released == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	input in = { data, size };
	if (!fake_blob[0])
		for (size_t i = 0; i < FAKE_BLOB_LEN; i++)
			fake_blob[i] = (uint8_t)(0x80 + i);
	rand_calls = 0;
	memset(rand_seed, 0, sizeof rand_seed);
	if (take_u8(&in) % 2 == 0)
		fuzz_sealed(&in);
	else
		fuzz_raw(&in);
	return 0;
}
