#include "common/tlog/tlog_records.h"

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

/* After a record whose hash is wrong: the whole records that follow. */
static void count_after(kms_cursor c, tlog_records_scan *out)
{
	const uint8_t *entry, *hash;
	uint16_t len;
	while (c.left > 0 && record_next(&c, &entry, &len, &hash) == TLOG_RECORD_WHOLE)
		out->whole_after++;
	out->after_reach_end = out->whole_after > 0 && c.left == 0;
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
			if (fault == TLOG_RECORD_HASH)
				count_after(c, out);
			return KMS_OK;
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
