#include "common/tlog/tlog_records.h"

#include <stdlib.h>
#include <string.h>

#include "common/cursor.h"
#include "common/error.h"

const char *tlog_record_fault_text(tlog_record_fault fault)
{
	switch (fault) {
	case TLOG_RECORD_WHOLE:
		return "whole";
	case TLOG_RECORD_SHORT:
		return "cut short";
	case TLOG_RECORD_EMPTY:
		return "length 0";
	case TLOG_RECORD_HASH:
		return "leaf hash does not match its entry";
	}
	return "unknown fault";
}

/* One record at c; the cursor moves past it only when it is whole or only
 * its hash is wrong (its length can then be believed for reading on). */
static tlog_record_fault record_next(kms_cursor *c, const uint8_t **entry, uint16_t *len,
                                     const uint8_t **hash)
{
	kms_cursor at = *c;
	uint8_t want[TLOG_HASH_SIZE];
	if (!kms_cursor_u16be(&at, len))
		return TLOG_RECORD_SHORT;
	if (*len == 0)
		return TLOG_RECORD_EMPTY;
	if (!kms_cursor_take(&at, *len, entry) || !kms_cursor_take(&at, TLOG_HASH_SIZE, hash))
		return TLOG_RECORD_SHORT;
	*c = at;
	if (tlog_leaf_hash(*entry, *len, want) != KMS_OK || !tlog_hash_equal(want, *hash))
		return TLOG_RECORD_HASH;
	return TLOG_RECORD_WHOLE;
}

/* Offsets in bytes[from..len] from which lengths chain exactly to len:
 * one pass from the end, a bit per offset (bit i is offset from + i). */
static uint8_t *chains_to_end(const uint8_t *bytes, size_t len, size_t from)
{
	size_t n = len - from;
	uint8_t *lands = calloc(n / 8 + 1, 1);
	if (lands == NULL)
		return NULL;
	lands[n / 8] |= (uint8_t)(1u << (n % 8));
	for (size_t i = n; i-- > 0;) {
		size_t at = from + i;
		if (len - at < TLOG_RECORD_OVERHEAD + TLOG_ENTRY_MIN)
			continue;
		size_t entry_len = (size_t)bytes[at] << 8 | bytes[at + 1];
		if (entry_len == 0 || len - at - TLOG_RECORD_OVERHEAD < entry_len)
			continue;
		size_t next = i + TLOG_RECORD_OVERHEAD + entry_len;
		if (lands[next / 8] & (1u << (next % 8)))
			lands[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	return lands;
}

/* After a bad record at `from`: whether, from some later offset, whole
 * records run exactly to the end of the file. Lengths are chained first,
 * so only chains that land on the end are hashed. A torn write leaves no
 * such run; damage in place (a flipped byte in an entry, a hash or a
 * length field) does. */
static kms_status find_whole_after(const uint8_t *bytes, size_t len, size_t from,
                                   tlog_records_scan *out)
{
	uint8_t *lands = chains_to_end(bytes, len, from);
	KMS_ENSURE(lands != NULL, KMS_INTERNAL, "tlog: out of memory reading %zu bytes of records",
	           len - from);
	for (size_t i = 1; from + i < len && !out->after_reach_end; i++) {
		if (!(lands[i / 8] & (1u << (i % 8))))
			continue;
		kms_cursor c = kms_cursor_init(bytes + from + i, len - from - i);
		const uint8_t *entry, *hash;
		uint16_t entry_len;
		uint64_t whole = 0;
		bool all_whole = true;
		while (all_whole && c.left > 0) {
			all_whole = record_next(&c, &entry, &entry_len, &hash) == TLOG_RECORD_WHOLE;
			whole += all_whole;
		}
		if (all_whole && whole > 0) {
			out->whole_after = whole;
			out->after_offset = from + i;
			out->after_reach_end = true;
		}
	}
	free(lands);
	return KMS_OK;
}

kms_status tlog_records_scan_bytes(const uint8_t *bytes, size_t len, tlog_record_visitor visit,
                                   void *ctx, tlog_records_scan *out)
{
	memset(out, 0, sizeof *out);
	kms_cursor c = kms_cursor_init(bytes, len);
	while (c.left > 0) {
		const uint8_t *entry = NULL, *hash = NULL;
		uint16_t entry_len = 0;
		tlog_record_fault fault = record_next(&c, &entry, &entry_len, &hash);
		if (fault != TLOG_RECORD_WHOLE) {
			out->fault = fault;
			return find_whole_after(bytes, len, (size_t)out->whole_bytes, out);
		}
		if (visit != NULL)
			KMS_GUARD(visit(ctx, out->whole, out->whole_bytes, entry, entry_len, hash));
		out->whole++;
		out->whole_bytes += TLOG_RECORD_OVERHEAD + entry_len;
	}
	return KMS_OK;
}

size_t tlog_record_put(uint8_t *out, size_t cap, const uint8_t *entry, size_t len)
{
	if (len < TLOG_ENTRY_MIN || len > TLOG_ENTRY_MAX || cap < TLOG_RECORD_OVERHEAD ||
	    cap - TLOG_RECORD_OVERHEAD < len)
		return 0;
	kms_writer w = kms_writer_init(out, cap);
	(void)kms_writer_u16be(&w, (uint16_t)len);
	(void)kms_writer_put(&w, entry, len);
	if (!w.ok || tlog_leaf_hash(entry, len, out + TLOG_ENTRY_LENGTH_SIZE + len) != KMS_OK)
		return 0;
	return TLOG_RECORD_OVERHEAD + len;
}
