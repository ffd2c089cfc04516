#include "common/tlog/tlog_note.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/cursor.h"
#include "common/base64.h"
#include "common/error.h"
#include "common/utf8.h"

#define NOTE_WHAT(what) ((what) ? (what) : "note")
#define CHECKPOINT_WHAT(what) ((what) ? (what) : "checkpoint")

#define KEY_SEPARATOR '+'
#define SIGNATURE_MIN_DECODED (TLOG_KEY_ID_SIZE + 1) /* as Go's note.Open */
#define SIGNATURE_DECODED_MAX (TLOG_SIGNATURE_B64_MAX / 4 * 3)
#define ED25519_SIGNATURE_DECODED (TLOG_KEY_ID_SIZE + TLOG_ED25519_SIGNATURE_SIZE)
#define PUBLIC_KEY_DECODED (1 + TLOG_ED25519_PUBLIC_KEY_SIZE)

/* ---- text: strict UTF-8, no control characters ---- */

/* What Go's unicode.IsSpace calls a space (the White_Space property). */
static bool is_unicode_space(uint32_t c)
{
	switch (c) {
	case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
	case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029:
	case 0x202f: case 0x205f: case 0x3000:
		return true;
	default:
		return c >= 0x2000 && c <= 0x200a;
	}
}

/* Note text rules: UTF-8, no control character below U+0020 but "\n".
 * Fails with status: text from outside is KMS_INVALID_CIPHERTEXT, our own
 * KMS_INVALID_ARGUMENT. */
static kms_status text_check(const char *text, size_t len, kms_status status, const char *what,
                             const char *part)
{
	const uint8_t *s = (const uint8_t *)text;
	for (size_t i = 0; i < len;) {
		size_t at = i;
		uint32_t c;
		KMS_ENSURE(kms_utf8_next(s, len, &i, &c), status,
		           "%s is malformed: %s: byte %zu is not UTF-8", what, part, at);
		KMS_ENSURE(c >= 0x20 || c == '\n', status,
		           "%s is malformed: %s: byte %zu is control character 0x%02x", what, part,
		           at, (unsigned)c);
	}
	return KMS_OK;
}

/* A key name, of any length: non-empty UTF-8, no space, no '+', no control. */
static bool name_valid(const char *name, size_t len)
{
	const uint8_t *s = (const uint8_t *)name;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len;) {
		uint32_t c;
		if (!kms_utf8_next(s, len, &i, &c) || c < 0x20 || c == KEY_SEPARATOR ||
		    is_unicode_space(c))
			return false;
	}
	return true;
}

kms_status tlog_key_name_check(const char *name, size_t len)
{
	KMS_ENSURE(name != NULL && len >= 1 && len <= TLOG_KEY_NAME_MAX, KMS_INVALID_ARGUMENT,
	           "key name: %zu bytes, must be 1..%d", name ? len : 0, TLOG_KEY_NAME_MAX);
	KMS_ENSURE(name_valid(name, len), KMS_INVALID_ARGUMENT,
	           "key name: must be UTF-8 without spaces, '+' or control characters");
	return KMS_OK;
}

/* ---- keys ---- */

kms_status tlog_key_id(const char *name, const uint8_t public_key[static TLOG_ED25519_PUBLIC_KEY_SIZE],
                       uint32_t *key_id)
{
	static const uint8_t newline = '\n', type = TLOG_SIG_TYPE_ED25519;
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	*key_id = 0;
	KMS_GUARD(tlog_key_name_check(name, name ? strlen(name) : 0));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	          EVP_DigestUpdate(md, name, strlen(name)) == 1 &&
	          EVP_DigestUpdate(md, &newline, 1) == 1 && EVP_DigestUpdate(md, &type, 1) == 1 &&
	          EVP_DigestUpdate(md, public_key, TLOG_ED25519_PUBLIC_KEY_SIZE) == 1 &&
	          EVP_DigestFinal_ex(md, digest, &digest_len) == 1 && digest_len >= TLOG_KEY_ID_SIZE;
	EVP_MD_CTX_free(md);
	if (!ok) {
		ERR_clear_error();
		return KMS_FAIL(KMS_INTERNAL, "key id of %s: SHA-256 failed (OpenSSL)", name);
	}
	*key_id = ((uint32_t)digest[0] << 24) | ((uint32_t)digest[1] << 16) |
	          ((uint32_t)digest[2] << 8) | (uint32_t)digest[3];
	return KMS_OK;
}

kms_status tlog_verifier_key_format(const char *name,
                                    const uint8_t public_key[static TLOG_ED25519_PUBLIC_KEY_SIZE],
                                    char out[static TLOG_VERIFIER_KEY_MAX])
{
	uint8_t typed[PUBLIC_KEY_DECODED];
	char b64[TLOG_PUBLIC_KEY_B64_LEN + 1];
	uint32_t key_id;
	out[0] = '\0';
	KMS_GUARD(tlog_key_id(name, public_key, &key_id));
	typed[0] = TLOG_SIG_TYPE_ED25519;
	memcpy(typed + 1, public_key, TLOG_ED25519_PUBLIC_KEY_SIZE);
	KMS_ENSURE(kms_base64_encode(typed, sizeof typed, b64, sizeof b64), KMS_INTERNAL,
	           "verifier key of %s: base64 failed", name);
	int w = snprintf(out, TLOG_VERIFIER_KEY_MAX, "%s%c%08x%c%s", name, KEY_SEPARATOR,
	                 (unsigned)key_id, KEY_SEPARATOR, b64);
	if (w < 0 || w >= TLOG_VERIFIER_KEY_MAX) {
		out[0] = '\0';
		return KMS_FAIL(KMS_INTERNAL, "verifier key of %s does not fit", name);
	}
	return KMS_OK;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10; /* Go's ParseUint takes either case */
	return -1;
}

kms_status tlog_verifier_key_parse(const char *vkey, tlog_verifier *out)
{
	memset(out, 0, sizeof *out);
	KMS_ENSURE(vkey != NULL, KMS_INVALID_ARGUMENT, "verifier key: missing");
	size_t len = strnlen(vkey, TLOG_VERIFIER_KEY_MAX);
	KMS_ENSURE(len < TLOG_VERIFIER_KEY_MAX, KMS_INVALID_ARGUMENT,
	           "verifier key: longer than %d bytes", TLOG_VERIFIER_KEY_MAX - 1);
	const char *plus1 = memchr(vkey, KEY_SEPARATOR, len);
	const char *plus2 = plus1 ? memchr(plus1 + 1, KEY_SEPARATOR, len - (size_t)(plus1 + 1 - vkey)) : NULL;
	KMS_ENSURE(plus2 != NULL, KMS_INVALID_ARGUMENT,
	           "verifier key: not <name>+<key id>+<key>");
	size_t name_len = (size_t)(plus1 - vkey);
	kms_status st = tlog_key_name_check(vkey, name_len);
	if (st != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "verifier key: invalid key name");
	KMS_ENSURE(plus2 - plus1 - 1 == TLOG_KEY_ID_HEX_LEN, KMS_INVALID_ARGUMENT,
	           "verifier key: key id is not %d hex digits", TLOG_KEY_ID_HEX_LEN);
	uint32_t key_id = 0;
	for (const char *p = plus1 + 1; p < plus2; p++) {
		int v = hex_value(*p);
		KMS_ENSURE(v >= 0, KMS_INVALID_ARGUMENT, "verifier key: key id is not hex");
		key_id = (key_id << 4) | (uint32_t)v;
	}
	const char *b64 = plus2 + 1;
	size_t b64_len = len - (size_t)(b64 - vkey);
	uint8_t typed[PUBLIC_KEY_DECODED];
	size_t typed_len;
	KMS_ENSURE(b64_len == TLOG_PUBLIC_KEY_B64_LEN &&
	                   kms_base64_decode(b64, b64_len, typed, sizeof typed, &typed_len) &&
	                   typed_len == PUBLIC_KEY_DECODED,
	           KMS_INVALID_ARGUMENT, "verifier key: key is not base64 of %d bytes",
	           PUBLIC_KEY_DECODED);
	KMS_ENSURE(typed[0] == TLOG_SIG_TYPE_ED25519, KMS_INVALID_ARGUMENT,
	           "verifier key: signature type 0x%02x is not Ed25519 (0x01)", typed[0]);

	tlog_verifier v = { .key_id = key_id };
	memcpy(v.name, vkey, name_len);
	v.name[name_len] = '\0';
	memcpy(v.public_key, typed + 1, TLOG_ED25519_PUBLIC_KEY_SIZE);
	uint32_t expected;
	KMS_GUARD(tlog_key_id(v.name, v.public_key, &expected));
	KMS_ENSURE(expected == key_id, KMS_INVALID_ARGUMENT,
	           "verifier key: key id %08x is not the key's (%08x)", (unsigned)key_id,
	           (unsigned)expected);
	*out = v;
	return KMS_OK;
}

/* KMS_OK if sig is public_key's Ed25519 signature of msg, KMS_INVALID_CIPHERTEXT
 * if not, KMS_INTERNAL if OpenSSL cannot check. Leaves no message on
 * KMS_INVALID_CIPHERTEXT: the caller words it. */
static kms_status ed25519_verify(const uint8_t public_key[static TLOG_ED25519_PUBLIC_KEY_SIZE],
                                 const uint8_t *msg, size_t len,
                                 const uint8_t sig[static TLOG_ED25519_SIGNATURE_SIZE])
{
	kms_status st = KMS_OK;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_key,
	                                             TLOG_ED25519_PUBLIC_KEY_SIZE);
	if (pkey == NULL) {
		/* OpenSSL takes any 32 bytes here; a refusal is a bad key. */
		st = KMS_INVALID_CIPHERTEXT;
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey) != 1) {
		st = KMS_FAIL(KMS_INTERNAL, "Ed25519: cannot set up verification (OpenSSL)");
		goto out;
	}
	if (EVP_DigestVerify(md, sig, TLOG_ED25519_SIGNATURE_SIZE, msg, len) != 1)
		st = KMS_INVALID_CIPHERTEXT;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return st;
}

/* ---- signed notes ---- */

kms_status tlog_note_sign(const char *body, size_t body_len, const char *name,
                          const uint8_t public_key[static TLOG_ED25519_PUBLIC_KEY_SIZE],
                          tlog_sign_fn sign, void *sign_ctx, char *out, size_t cap,
                          size_t *out_len)
{
	*out_len = 0;
	KMS_ENSURE(out != NULL && cap > 0, KMS_INVALID_ARGUMENT, "sign note: no output buffer");
	out[0] = '\0';
	KMS_ENSURE(sign != NULL, KMS_INVALID_ARGUMENT, "sign note: no signer");
	KMS_ENSURE(body != NULL && body_len > 0 && body[body_len - 1] == '\n',
	           KMS_INVALID_ARGUMENT, "sign note: the text must end in a newline");
	KMS_ENSURE(body_len <= TLOG_NOTE_MAX - TLOG_SIGNATURE_LINE_MAX - 1, KMS_INVALID_ARGUMENT,
	           "sign note: text of %zu bytes is too long", body_len);
	KMS_GUARD(text_check(body, body_len, KMS_INVALID_ARGUMENT, "note to sign", "text"));
	uint32_t key_id;
	KMS_GUARD(tlog_key_id(name, public_key, &key_id));

	uint8_t sig[ED25519_SIGNATURE_DECODED];
	sig[0] = (uint8_t)(key_id >> 24);
	sig[1] = (uint8_t)(key_id >> 16);
	sig[2] = (uint8_t)(key_id >> 8);
	sig[3] = (uint8_t)key_id;
	KMS_GUARD(sign(sign_ctx, (const uint8_t *)body, body_len, sig + TLOG_KEY_ID_SIZE));
	/* Nothing leaves before it verifies: this catches a signer using
	 * another key than public_key, or a faulty one. */
	kms_status st = ed25519_verify(public_key, (const uint8_t *)body, body_len,
	                               sig + TLOG_KEY_ID_SIZE);
	if (st == KMS_INVALID_CIPHERTEXT)
		return KMS_FAIL(KMS_INTERNAL,
		                "sign note: the signature does not verify with key %s+%08x",
		                name, (unsigned)key_id);
	KMS_GUARD(st);

	char b64[TLOG_ED25519_SIGNATURE_B64_LEN + 1];
	KMS_ENSURE(kms_base64_encode(sig, sizeof sig, b64, sizeof b64),
	           KMS_INTERNAL, "sign note: base64 failed");
	size_t name_len = strlen(name);
	size_t total = body_len + 1 + (sizeof TLOG_EM_DASH_SPACE - 1) + name_len + 1 +
	               TLOG_ED25519_SIGNATURE_B64_LEN + 1;
	KMS_ENSURE(total < cap, KMS_INVALID_ARGUMENT,
	           "sign note: needs %zu bytes and a NUL, buffer has %zu", total, cap);
	kms_writer w = kms_writer_init((uint8_t *)out, cap);
	(void)kms_writer_put(&w, body, body_len);
	(void)kms_writer_u8(&w, '\n');
	(void)kms_writer_put(&w, TLOG_EM_DASH_SPACE, sizeof TLOG_EM_DASH_SPACE - 1);
	(void)kms_writer_put(&w, name, name_len);
	(void)kms_writer_u8(&w, ' ');
	(void)kms_writer_put(&w, b64, TLOG_ED25519_SIGNATURE_B64_LEN);
	(void)kms_writer_u8(&w, '\n');
	(void)kms_writer_u8(&w, '\0');
	if (!w.ok) {
		out[0] = '\0';
		return KMS_FAIL(KMS_INTERNAL, "sign note: does not fit its buffer");
	}
	*out_len = total;
	return KMS_OK;
}

/* Takes the next line (without its "\n") from c; false at the end or for
 * a last line without "\n". */
static bool take_line(kms_cursor *c, const char **line, size_t *len)
{
	const uint8_t *bytes;
	const uint8_t *nl = c->ok && c->left ? memchr(c->next, '\n', c->left) : NULL;
	*line = NULL;
	*len = 0;
	if (nl == NULL)
		return false;
	size_t n = (size_t)(nl - c->next);
	if (!kms_cursor_take(c, n + 1, &bytes))
		return false;
	*line = (const char *)bytes;
	*len = n;
	return true;
}

/* The start of the last "\n\n" in text, or len if none. */
static size_t last_blank_line(const char *text, size_t len)
{
	for (size_t i = len; i >= 2; i--)
		if (text[i - 2] == '\n' && text[i - 1] == '\n')
			return i - 2;
	return len;
}

kms_status tlog_note_body(const char *text, size_t len, const char *what, tlog_note_view *out)
{
	memset(out, 0, sizeof *out);
	what = NOTE_WHAT(what);
	KMS_ENSURE(text != NULL || len == 0, KMS_INVALID_ARGUMENT, "%s: no text", what);
	size_t split = last_blank_line(text, len);
	KMS_ENSURE(split < len, KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: no blank line before the signatures", what);
	out->body = text;
	out->body_len = split + 1;
	return KMS_OK;
}

kms_status tlog_note_verify(const char *text, size_t len, const tlog_verifier *key,
                            const char *what, tlog_note_view *out)
{
	memset(out, 0, sizeof *out);
	what = NOTE_WHAT(what);
	KMS_ENSURE(key != NULL, KMS_INVALID_ARGUMENT, "%s: no verifier key", what);
	KMS_ENSURE(text != NULL || len == 0, KMS_INVALID_ARGUMENT, "%s: no text", what);
	KMS_ENSURE(len <= TLOG_NOTE_MAX, KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: %zu bytes, more than %u", what, len, TLOG_NOTE_MAX);
	KMS_GUARD(text_check(text, len, KMS_INVALID_CIPHERTEXT, what, "note"));

	size_t split = last_blank_line(text, len);
	KMS_ENSURE(split < len, KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: no blank line before the signatures", what);
	size_t body_len = split + 1;
	kms_cursor c = kms_cursor_init((const uint8_t *)text + split + 2, len - split - 2);
	KMS_ENSURE(c.left > 0, KMS_INVALID_CIPHERTEXT, "%s is malformed: no signature lines", what);
	KMS_ENSURE(text[len - 1] == '\n', KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: the last signature line does not end in a newline", what);

	size_t key_name_len = strlen(key->name);
	bool verified = false, seen = false;
	unsigned lines = 0;
	const char *line;
	size_t line_len;
	while (take_line(&c, &line, &line_len)) {
		lines++;
		KMS_ENSURE(lines <= TLOG_NOTE_SIGNATURES_MAX, KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: more than %d signatures", what, TLOG_NOTE_SIGNATURES_MAX);
		size_t prefix = sizeof TLOG_EM_DASH_SPACE - 1;
		KMS_ENSURE(line_len > prefix && memcmp(line, TLOG_EM_DASH_SPACE, prefix) == 0,
		           KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: signature line %u does not start with an em dash and "
		           "a space", what, lines);
		const char *name = line + prefix;
		const char *space = memchr(name, ' ', line_len - prefix);
		size_t name_len = space ? (size_t)(space - name) : line_len - prefix;
		const char *b64 = space ? space + 1 : name + name_len;
		size_t b64_len = (size_t)(line + line_len - b64);
		KMS_ENSURE(name_valid(name, name_len), KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: signature line %u: invalid key name", what, lines);
		uint8_t sig[SIGNATURE_DECODED_MAX];
		size_t sig_len = 0;
		KMS_ENSURE(b64_len <= TLOG_SIGNATURE_B64_MAX &&
		                   kms_base64_decode(b64, b64_len, sig, sizeof sig, &sig_len) &&
		                   sig_len >= SIGNATURE_MIN_DECODED,
		           KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: signature line %u: signature is not base64 of a key id "
		           "and a signature", what, lines);
		uint32_t key_id = ((uint32_t)sig[0] << 24) | ((uint32_t)sig[1] << 16) |
		                  ((uint32_t)sig[2] << 8) | (uint32_t)sig[3];

		/* Signatures by other keys (witnesses, a rotated key) are not ours
		 * to judge; repeated signatures by our key count once. */
		if (name_len != key_name_len || memcmp(name, key->name, name_len) != 0 ||
		    key_id != key->key_id || seen)
			continue;
		seen = true;
		kms_status st = sig_len == ED25519_SIGNATURE_DECODED
		                        ? ed25519_verify(key->public_key, (const uint8_t *)text,
		                                         body_len, sig + TLOG_KEY_ID_SIZE)
		                        : KMS_INVALID_CIPHERTEXT;
		if (st == KMS_INVALID_CIPHERTEXT)
			return KMS_FAIL(st, "%s signature does not verify with key %s+%08x", what,
			                key->name, (unsigned)key->key_id);
		KMS_GUARD(st);
		verified = true;
	}
	KMS_ENSURE(kms_cursor_done(&c), KMS_INTERNAL, "%s: signature lines left unread", what);
	KMS_ENSURE(verified, KMS_INVALID_CIPHERTEXT, "%s is not signed by key %s+%08x", what,
	           key->name, (unsigned)key->key_id);
	out->body = text;
	out->body_len = body_len;
	return KMS_OK;
}

/* ---- checkpoints ---- */

kms_status tlog_checkpoint_format(const char *origin, uint64_t tree_size,
                                  const uint8_t root[static TLOG_HASH_SIZE],
                                  const char *extensions, char *out, size_t cap,
                                  size_t *out_len)
{
	*out_len = 0;
	KMS_ENSURE(out != NULL && cap > 0, KMS_INVALID_ARGUMENT, "checkpoint: no output buffer");
	out[0] = '\0';
	size_t origin_len = origin ? strlen(origin) : 0;
	KMS_ENSURE(origin_len >= 1 && origin_len <= TLOG_ORIGIN_MAX, KMS_INVALID_ARGUMENT,
	           "checkpoint: origin is %zu bytes, must be 1..%d", origin_len, TLOG_ORIGIN_MAX);
	KMS_ENSURE(memchr(origin, '\n', origin_len) == NULL, KMS_INVALID_ARGUMENT,
	           "checkpoint: origin contains a newline");
	KMS_GUARD(text_check(origin, origin_len, KMS_INVALID_ARGUMENT, "checkpoint", "origin"));
	KMS_ENSURE(tree_size <= TLOG_TREE_SIZE_MAX, KMS_INVALID_ARGUMENT,
	           "checkpoint: tree size %llu is too large", (unsigned long long)tree_size);
	size_t ext_len = extensions ? strlen(extensions) : 0;
	if (ext_len > 0) {
		KMS_ENSURE(extensions[ext_len - 1] == '\n' && extensions[0] != '\n' &&
		                   strstr(extensions, "\n\n") == NULL,
		           KMS_INVALID_ARGUMENT,
		           "checkpoint: extension lines must be non-empty and end in a newline");
		KMS_GUARD(text_check(extensions, ext_len, KMS_INVALID_ARGUMENT, "checkpoint",
		                     "extensions"));
	}

	char size_text[TLOG_TREE_SIZE_DIGITS_MAX + 1];
	int size_len = snprintf(size_text, sizeof size_text, "%llu", (unsigned long long)tree_size);
	char root_b64[TLOG_ROOT_B64_LEN + 1];
	KMS_ENSURE(size_len > 0 && kms_base64_encode(root, TLOG_HASH_SIZE, root_b64, sizeof root_b64),
	           KMS_INTERNAL, "checkpoint: cannot encode");
	size_t total = origin_len + 1 + (size_t)size_len + 1 + TLOG_ROOT_B64_LEN + 1 + ext_len;
	KMS_ENSURE(total < cap, KMS_INVALID_ARGUMENT,
	           "checkpoint: needs %zu bytes and a NUL, buffer has %zu", total, cap);
	kms_writer w = kms_writer_init((uint8_t *)out, cap);
	(void)kms_writer_put(&w, origin, origin_len);
	(void)kms_writer_u8(&w, '\n');
	(void)kms_writer_put(&w, size_text, (size_t)size_len);
	(void)kms_writer_u8(&w, '\n');
	(void)kms_writer_put(&w, root_b64, TLOG_ROOT_B64_LEN);
	(void)kms_writer_u8(&w, '\n');
	(void)kms_writer_put(&w, extensions, ext_len);
	(void)kms_writer_u8(&w, '\0');
	if (!w.ok) {
		out[0] = '\0';
		return KMS_FAIL(KMS_INTERNAL, "checkpoint: does not fit its buffer");
	}
	*out_len = total;
	return KMS_OK;
}

static kms_status parse_tree_size(const char *line, size_t len, const char *what, uint64_t *out)
{
	*out = 0;
	KMS_ENSURE(len >= 1 && len <= TLOG_TREE_SIZE_DIGITS_MAX, KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: tree size line is %zu characters", what, len);
	KMS_ENSURE(len == 1 || line[0] != '0', KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: tree size has a leading zero", what);
	uint64_t size = 0;
	for (size_t i = 0; i < len; i++) {
		KMS_ENSURE(line[i] >= '0' && line[i] <= '9', KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: tree size is not a decimal number", what);
		unsigned digit = (unsigned)(line[i] - '0');
		KMS_ENSURE(size <= (TLOG_TREE_SIZE_MAX - digit) / 10, KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: tree size is over %llu", what,
		           (unsigned long long)TLOG_TREE_SIZE_MAX);
		size = size * 10 + digit;
	}
	*out = size;
	return KMS_OK;
}

kms_status tlog_checkpoint_parse(const char *body, size_t len, const char *what,
                                 tlog_checkpoint *out)
{
	memset(out, 0, sizeof *out);
	what = CHECKPOINT_WHAT(what);
	KMS_ENSURE(body != NULL || len == 0, KMS_INVALID_ARGUMENT, "%s: no body", what);
	KMS_ENSURE(len <= TLOG_NOTE_MAX, KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: %zu bytes, more than %u", what, len, TLOG_NOTE_MAX);
	KMS_GUARD(text_check(body, len, KMS_INVALID_CIPHERTEXT, what, "body"));

	kms_cursor c = kms_cursor_init((const uint8_t *)body, len);
	const char *origin, *size_line, *root_line, *line;
	size_t origin_len, size_len, root_len, line_len;
	KMS_ENSURE(take_line(&c, &origin, &origin_len), KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: no origin line", what);
	KMS_ENSURE(origin_len >= 1 && origin_len <= TLOG_ORIGIN_MAX, KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: origin is %zu bytes, must be 1..%d", what, origin_len,
	           TLOG_ORIGIN_MAX);
	KMS_ENSURE(take_line(&c, &size_line, &size_len), KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: no tree size line", what);
	tlog_checkpoint cp = { .origin = origin, .origin_len = origin_len };
	KMS_GUARD(parse_tree_size(size_line, size_len, what, &cp.tree_size));
	KMS_ENSURE(take_line(&c, &root_line, &root_len), KMS_INVALID_CIPHERTEXT,
	           "%s is malformed: no root hash line", what);
	uint8_t root[TLOG_HASH_SIZE];
	size_t root_bytes;
	KMS_ENSURE(root_len == TLOG_ROOT_B64_LEN &&
	                   kms_base64_decode(root_line, root_len, root, sizeof root, &root_bytes) &&
	                   root_bytes == TLOG_HASH_SIZE,
	           KMS_INVALID_CIPHERTEXT, "%s is malformed: root hash is not base64 of %d bytes",
	           what, TLOG_HASH_SIZE);
	memcpy(cp.root, root, TLOG_HASH_SIZE);

	cp.extensions = (const char *)c.next;
	cp.extensions_len = c.left;
	unsigned n = 0;
	while (c.left > 0) {
		n++;
		KMS_ENSURE(take_line(&c, &line, &line_len), KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: line %u does not end in a newline", what, 3 + n);
		KMS_ENSURE(line_len > 0, KMS_INVALID_CIPHERTEXT,
		           "%s is malformed: extension line %u is empty", what, n);
	}
	KMS_ENSURE(kms_cursor_done(&c), KMS_INVALID_CIPHERTEXT, "%s is malformed: bytes left over",
	           what);
	*out = cp;
	return KMS_OK;
}
