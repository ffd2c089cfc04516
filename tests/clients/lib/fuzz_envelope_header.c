/*
 * fuzz_envelope_header: the envelope header's reader
 * (clients/lib/envelope_format.c, docs/envelope-format.md section 1) over
 * any bytes a message may begin with. It runs before kmsd is asked
 * anything, on bytes from anywhere.
 *
 * Invariants:
 *   - env_header_length on every prefix of the input either asks for more
 *     (total 0), names the full length, or refuses; once it names a length
 *     or refuses, every longer prefix says the same;
 *   - a named length is at most KMS_ENVELOPE_HEADER_MAX;
 *   - a refusal's reason is one line of printable ASCII;
 *   - env_header_parse on exactly the named length either refuses or gives
 *     fields that lie inside the input, in range, and that written back by
 *     env_header_write give the same bytes (the MAC aside, which it zeroes).
 */
#include <stdlib.h>
#include <string.h>

#include "clients/lib/envelope_format.h"
#include "tests/support/fuzz.h"

static void check_why(const char *why)
{
	FUZZ_CHECK(why && why[0]);
	for (const char *p = why; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t named = 0;
	bool refused = false;
	for (size_t n = 1; n <= size && n <= ENV_OFF_WRAPPED + ENV_WRAPPED_MAX + 4; n++) {
		size_t total = 0;
		const char *why = NULL;
		kms_status st = env_header_length(data, n, &total, &why);
		if (st != KMS_OK) {
			FUZZ_CHECK(st == KMS_INVALID_CIPHERTEXT);
			check_why(why);
			FUZZ_CHECK(!named);
			refused = true;
			continue;
		}
		FUZZ_CHECK(!refused);
		if (named)
			FUZZ_CHECK(total == named);
		else if (total)
			named = total;
	}
	if (!named || named > size)
		return 0;
	FUZZ_CHECK(named <= KMS_ENVELOPE_HEADER_MAX);

	env_header h;
	const char *why = NULL;
	kms_status st = env_header_parse(data, named, &h, &why);
	if (st != KMS_OK) {
		FUZZ_CHECK(st == KMS_INVALID_CIPHERTEXT);
		check_why(why);
		return 0;
	}
	FUZZ_CHECK(h.len == named);
	FUZZ_CHECK(h.segment_size >= KMS_ENVELOPE_SEGMENT_MIN &&
	           h.segment_size <= KMS_ENVELOPE_SEGMENT_MAX);
	FUZZ_CHECK(h.wrapped_len >= ENV_WRAPPED_MIN && h.wrapped_len <= ENV_WRAPPED_MAX);
	FUZZ_CHECK(h.wrapped >= data && h.wrapped + h.wrapped_len <= data + named);
	FUZZ_CHECK(h.context >= data && h.context + h.context_len <= data + named);
	FUZZ_CHECK(h.mac == data + named - ENV_MAC_LEN);
	FUZZ_CHECK(env_header_size(h.wrapped_len, h.context_len) == named);

	uint8_t *again = malloc(named);
	FUZZ_CHECK(again != NULL);
	env_header_write(again, h.segment_size, h.salt, h.prefix, h.wrapped, h.wrapped_len,
	                 h.context, h.context_len);
	FUZZ_CHECK(memcmp(again, data, named - ENV_MAC_LEN) == 0);
	free(again);
	return 0;
}
