#include "common/base64.h"

#include <kms/secmem.h>

#define B64_PAD '='

/* All ones when lo <= c <= hi, else zero; no branch. Relies on an
 * arithmetic right shift of a negative int, as GCC and Clang do. */
static int in_range(int c, int lo, int hi)
{
	return ((lo - 1 - c) & (c - hi - 1)) >> 8;
}

/* The character for 6 bits v. */
static char b64_char(unsigned v)
{
	int d = (int)v;
	int c = d + 'A';
	c += in_range(d, 26, 51) & ('a' - 26 - 'A');
	c += in_range(d, 52, 61) & ('0' - 52 - 'A');
	c += in_range(d, 62, 62) & ('+' - 62 - 'A');
	c += in_range(d, 63, 63) & ('/' - 63 - 'A');
	return (char)c;
}

/* The 6 bits a character stands for, or -1 outside the alphabet. */
static int b64_value(unsigned char ch)
{
	int c = ch;
	int v = -1;
	v += in_range(c, 'A', 'Z') & (c - 'A' + 1);
	v += in_range(c, 'a', 'z') & (c - 'a' + 26 + 1);
	v += in_range(c, '0', '9') & (c - '0' + 52 + 1);
	v += in_range(c, '+', '+') & (62 + 1);
	v += in_range(c, '/', '/') & (63 + 1);
	return v;
}

size_t kms_base64_encoded_len(size_t n)
{
	return (n / 3 + (n % 3 != 0)) * 4;
}

size_t kms_base64_decoded_max(size_t len)
{
	return len / 4 * 3;
}

bool kms_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
	if (n > KMS_BASE64_INPUT_MAX || !out || cap < kms_base64_encoded_len(n) + 1)
		return false;
	size_t o = 0, i = 0;
	for (; n - i >= 3; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_char(w >> 18);
		out[o++] = b64_char((w >> 12) & 0x3f);
		out[o++] = b64_char((w >> 6) & 0x3f);
		out[o++] = b64_char(w & 0x3f);
	}
	if (n - i == 1) {
		uint32_t w = (uint32_t)in[i] << 16;
		out[o++] = b64_char(w >> 18);
		out[o++] = b64_char((w >> 12) & 0x3f);
		out[o++] = B64_PAD;
		out[o++] = B64_PAD;
	} else if (n - i == 2) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_char(w >> 18);
		out[o++] = b64_char((w >> 12) & 0x3f);
		out[o++] = b64_char((w >> 6) & 0x3f);
		out[o++] = B64_PAD;
	}
	out[o] = '\0';
	return true;
}

char *kms_base64_encode_secure(const uint8_t *in, size_t n)
{
	if (n > KMS_BASE64_INPUT_MAX)
		return NULL;
	size_t cap = kms_base64_encoded_len(n) + 2; /* the line end and the NUL */
	char *text = kms_secure_alloc(cap);
	if (text && !kms_base64_encode(in, n, text, cap)) {
		kms_secure_free(text);
		text = NULL;
	}
	return text;
}

bool kms_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                       size_t *out_len)
{
	const unsigned char *s = (const unsigned char *)in;
	*out_len = 0;
	if (!in || len == 0 || len % 4 != 0)
		return false;
	size_t pad = s[len - 1] != B64_PAD ? 0 : s[len - 2] != B64_PAD ? 1 : 2;
	/* Everything before the padding is from the alphabet: no '=' inside. */
	int bad = 0;
	for (size_t i = 0; i < len - pad; i++)
		bad |= b64_value(s[i]);
	if (bad < 0)
		return false;
	/* One text per byte string: the bits the padding leaves unused are 0. */
	if ((pad == 2 && (b64_value(s[len - 3]) & 0x0f)) ||
	    (pad == 1 && (b64_value(s[len - 2]) & 0x03)))
		return false;
	size_t n = len / 4 * 3 - pad;
	if (!out || cap < n)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		/* Padding reads as 0 bits: checked above, and cut by n below. */
		uint32_t w = 0;
		for (size_t k = 0; k < 4; k++)
			w = w << 6 | (uint32_t)(s[i + k] == B64_PAD ? 0 : b64_value(s[i + k]));
		if (o < n)
			out[o++] = (uint8_t)(w >> 16);
		if (o < n)
			out[o++] = (uint8_t)(w >> 8);
		if (o < n)
			out[o++] = (uint8_t)w;
	}
	*out_len = n;
	return true;
}
