#include "common/utf8.h"

/* A continuation byte is 80..BF; only the second byte of some sequences is
 * narrower (Unicode Table 3-7, "Well-Formed UTF-8 Byte Sequences"). */
#define CONT_LO 0x80
#define CONT_HI 0xbf

bool kms_utf8_next(const uint8_t *s, size_t len, size_t *i, uint32_t *cp)
{
	size_t at = *i;
	uint8_t lead = s[at];
	size_t more;
	uint32_t c;
	uint8_t lo = CONT_LO, hi = CONT_HI;

	if (lead < 0x80) {
		*cp = lead;
		*i = at + 1;
		return true;
	} else if (lead >= 0xc2 && lead <= 0xdf) { /* C0, C1 would be overlong ASCII */
		more = 1;
		c = lead & 0x1f;
	} else if (lead == 0xe0) { /* E0 80..9F would be overlong */
		more = 2;
		c = lead & 0x0f;
		lo = 0xa0;
	} else if (lead >= 0xe1 && lead <= 0xec) {
		more = 2;
		c = lead & 0x0f;
	} else if (lead == 0xed) { /* ED A0..BF would be a surrogate */
		more = 2;
		c = lead & 0x0f;
		hi = 0x9f;
	} else if (lead >= 0xee && lead <= 0xef) {
		more = 2;
		c = lead & 0x0f;
	} else if (lead == 0xf0) { /* F0 80..8F would be overlong */
		more = 3;
		c = lead & 0x07;
		lo = 0x90;
	} else if (lead >= 0xf1 && lead <= 0xf3) {
		more = 3;
		c = lead & 0x07;
	} else if (lead == 0xf4) { /* F4 90..BF would be above U+10FFFF */
		more = 3;
		c = lead & 0x07;
		hi = 0x8f;
	} else { /* a continuation byte as lead, C0, C1, F5..FF */
		return false;
	}
	if (len - at - 1 < more)
		return false;
	for (size_t k = 1; k <= more; k++) {
		uint8_t cont = s[at + k];
		if (cont < lo || cont > hi)
			return false;
		c = (c << 6) | (cont & 0x3f);
		lo = CONT_LO;
		hi = CONT_HI;
	}
	*cp = c;
	*i = at + 1 + more;
	return true;
}

bool kms_utf8_valid(const uint8_t *bytes, size_t len, size_t *bad_offset)
{
	size_t i = 0;
	uint32_t cp;

	if (!bytes && len) {
		if (bad_offset)
			*bad_offset = 0;
		return false;
	}
	while (i < len) {
		if (!kms_utf8_next(bytes, len, &i, &cp)) {
			if (bad_offset)
				*bad_offset = i;
			return false;
		}
	}
	return true;
}

size_t kms_utf8_prefix(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	/* s[max] is the first byte left out: while it continues a character,
	 * that character started inside the prefix and must go too. */
	size_t n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}
