/*
 * The durable record file (common/tlog/tlog_records.h): whole records,
 * each way a record can be bad, and what follows a bad one, which is how
 * kmsd tells a torn write from damage in place.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/tlog/tlog_records.h"

#define FILE_CAP 4096

static const char *const ENTRIES[] = { "{\"a\":1}", "{\"b\":22}", "{\"c\":333}" };

typedef struct file {
	uint8_t bytes[FILE_CAP];
	size_t len;
	size_t offsets[8];
	size_t n;
} file;

static void add(file *f, const char *entry)
{
	size_t put = tlog_record_put(f->bytes + f->len, FILE_CAP - f->len,
	                             (const uint8_t *)entry, strlen(entry));
	assert_int_equal(put, TLOG_RECORD_OVERHEAD + strlen(entry));
	f->offsets[f->n++] = f->len;
	f->len += put;
}

static void three(file *f)
{
	memset(f, 0, sizeof *f);
	for (size_t i = 0; i < 3; i++)
		add(f, ENTRIES[i]);
}

static tlog_records_scan scan_of(const file *f, size_t len)
{
	tlog_records_scan s;
	assert_int_equal(tlog_records_scan_bytes(f->bytes, len, NULL, NULL, &s), KMS_OK);
	return s;
}

static kms_status count_visit(void *ctx, uint64_t index, uint64_t offset, const uint8_t *entry,
                              size_t len, const uint8_t hash[static TLOG_HASH_SIZE])
{
	(void)offset;
	(void)hash;
	assert_int_equal(len, strlen(ENTRIES[index]));
	assert_memory_equal(entry, ENTRIES[index], len);
	(*(uint64_t *)ctx)++;
	return KMS_OK;
}

static void whole_file(void **state)
{
	(void)state;
	file f;
	three(&f);
	uint64_t visited = 0;
	tlog_records_scan s;
	assert_int_equal(tlog_records_scan_bytes(f.bytes, f.len, count_visit, &visited, &s), KMS_OK);
	assert_int_equal(visited, 3);
	assert_int_equal(s.whole, 3);
	assert_int_equal(s.whole_bytes, f.len);
	assert_int_equal(s.fault, TLOG_RECORD_WHOLE);
	s = scan_of(&f, 0);
	assert_int_equal(s.whole, 0);
	assert_int_equal(s.fault, TLOG_RECORD_WHOLE);
}

static void torn_tails(void **state)
{
	(void)state;
	file f;
	three(&f);
	/* Every cut inside the last record is "cut short" there. */
	for (size_t len = f.offsets[2] + 1; len < f.len; len++) {
		tlog_records_scan s = scan_of(&f, len);
		assert_int_equal(s.whole, 2);
		assert_int_equal(s.whole_bytes, f.offsets[2]);
		assert_int_equal(s.fault, TLOG_RECORD_SHORT);
		assert_int_equal(s.whole_after, 0);
	}
	/* Zeros after the last record (a hole a crash left). */
	memset(f.bytes + f.len, 0, 64);
	tlog_records_scan s = scan_of(&f, f.len + 64);
	assert_int_equal(s.whole, 3);
	assert_int_equal(s.fault, TLOG_RECORD_EMPTY);
}

static void damage_in_place(void **state)
{
	(void)state;
	file f;
	three(&f);
	/* A byte of the first entry: a bad hash, two whole records after it
	 * to the end: not a torn write. */
	f.bytes[f.offsets[0] + 3] ^= 1;
	tlog_records_scan s = scan_of(&f, f.len);
	assert_int_equal(s.whole, 0);
	assert_int_equal(s.fault, TLOG_RECORD_HASH);
	assert_int_equal(s.whole_after, 2);
	assert_true(s.after_reach_end);
	f.bytes[f.offsets[0] + 3] ^= 1;
	/* The last record's hash: a bad record with nothing after it. */
	f.bytes[f.len - 1] ^= 1;
	s = scan_of(&f, f.len);
	assert_int_equal(s.whole, 2);
	assert_int_equal(s.fault, TLOG_RECORD_HASH);
	assert_int_equal(s.whole_after, 0);
	assert_false(s.after_reach_end);
	f.bytes[f.len - 1] ^= 1;
	/* The middle record's length: what follows no longer lines up at its
	 * length, but the last record is still found, whole, to the end. */
	f.bytes[f.offsets[1] + 1] ^= 1;
	s = scan_of(&f, f.len);
	assert_int_equal(s.whole, 1);
	assert_int_equal(s.whole_bytes, f.offsets[1]);
	assert_int_not_equal(s.fault, TLOG_RECORD_WHOLE);
	assert_true(s.after_reach_end);
	assert_int_equal(s.whole_after, 1);
	assert_int_equal(s.after_offset, f.offsets[2]);
	/* ... but not when that last record's hash is wrong too (found by
	 * the fuzzer: a chain that ends on a bad record is not whole). */
	f.bytes[f.len - 1] ^= 1;
	s = scan_of(&f, f.len);
	assert_false(s.after_reach_end);
	assert_int_equal(s.whole_after, 0);
	f.bytes[f.len - 1] ^= 1;
	f.bytes[f.offsets[1] + 1] ^= 1;
	/* A length field grown past the end of the file: cut short, yet the
	 * records after it are whole. */
	f.bytes[f.offsets[0]] = 0x7f;
	s = scan_of(&f, f.len);
	assert_int_equal(s.fault, TLOG_RECORD_SHORT);
	assert_true(s.after_reach_end);
	assert_int_equal(s.whole_after, 2);
}

/* What a crash leaves: the last batch's records cut anywhere, then
 * nothing, or zeros. Never "whole records after it". */
static void torn_batches_have_nothing_after(void **state)
{
	(void)state;
	file f;
	three(&f);
	for (size_t len = f.offsets[1] + 1; len < f.len; len++) {
		if (len == f.offsets[2])
			continue;
		tlog_records_scan s = scan_of(&f, len);
		assert_int_not_equal(s.fault, TLOG_RECORD_WHOLE);
		assert_false(s.after_reach_end);
		assert_int_equal(s.whole_after, 0);
	}
}

static void record_put_bounds(void **state)
{
	(void)state;
	uint8_t out[TLOG_RECORD_OVERHEAD + 4];
	assert_int_equal(tlog_record_put(out, sizeof out, (const uint8_t *)"x", 0), 0);
	assert_int_equal(tlog_record_put(out, sizeof out, (const uint8_t *)"abcde", 5), 0);
	assert_int_equal(tlog_record_put(out, sizeof out, (const uint8_t *)"abcd", 4),
	                 sizeof out);
	assert_int_equal(tlog_record_put(out, 3, (const uint8_t *)"a", 1), 0);
	static uint8_t big[TLOG_ENTRY_MAX + 1 + TLOG_RECORD_OVERHEAD];
	assert_int_equal(tlog_record_put(big, sizeof big, big, TLOG_ENTRY_MAX + 1), 0);
	assert_int_equal(tlog_record_put(big, sizeof big, big, TLOG_ENTRY_MAX),
	                 TLOG_ENTRY_MAX + TLOG_RECORD_OVERHEAD);
	assert_string_equal(tlog_record_fault_text(TLOG_RECORD_SHORT), "cut short");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(whole_file),
		cmocka_unit_test(torn_tails),
		cmocka_unit_test(damage_in_place),
		cmocka_unit_test(torn_batches_have_nothing_after),
		cmocka_unit_test(record_put_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
