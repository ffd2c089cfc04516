/*
 * tlog_records.h: the durable record of a log's entries, as kmsd keeps it
 * in log.bin (docs/audit-log.md, "The durable record"):
 *
 *     record = u16 BE length (1..65535) | entry | 32-byte leaf hash
 *
 * records back to back, nothing else. The leaf hash (RFC 6962,
 * SHA-256(0x00 || entry)) lets a reader tell a whole record from a damaged
 * or torn one without any other file. kmsd's recovery and `kms-admin audit
 * repair` both read the file through tlog_records_scan and write records
 * with tlog_record_put, so there is one copy of the format.
 *
 * Pure: no I/O. A scan that meets a bad record allocates a bit per byte
 * after it, and frees it before it returns.
 */
#ifndef KMS_TLOG_RECORDS_H
#define KMS_TLOG_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_tiles.h"

/* The file's name in kmsd's audit directory, beside public/. */
#define TLOG_RECORDS_FILE "log.bin"
#define TLOG_RECORD_OVERHEAD (TLOG_ENTRY_LENGTH_SIZE + TLOG_HASH_SIZE)

/* Why a record does not verify. */
typedef enum tlog_record_fault {
	TLOG_RECORD_WHOLE,   /* it verifies */
	TLOG_RECORD_SHORT,   /* the file ends inside it */
	TLOG_RECORD_EMPTY,   /* its length field says 0 */
	TLOG_RECORD_HASH,    /* its leaf hash is not the hash of its entry */
} tlog_record_fault;

/* "cut short", "length 0", "leaf hash does not match its entry". */
const char *tlog_record_fault_text(tlog_record_fault fault);

/* Called for each whole record from the start, in order. */
typedef kms_status (*tlog_record_visitor)(void *ctx, uint64_t index, uint64_t offset,
                                          const uint8_t *entry, size_t len,
                                          const uint8_t hash[static TLOG_HASH_SIZE]);

typedef struct tlog_records_scan {
	uint64_t whole;          /* records that verify, from the start */
	uint64_t whole_bytes;    /* their length: the offset of the first bad record */
	tlog_record_fault fault; /* of record `whole`; TLOG_RECORD_WHOLE: the file ended */
	/* After a bad record: whether, from some later offset, whole records
	 * run exactly to the end of the file (after_offset), and how many. A
	 * torn write leaves nothing whole after the tear; whole records after
	 * a bad one mean it was damaged in place (an entry, a hash or a length
	 * field). */
	bool after_reach_end;
	uint64_t whole_after;   /* 0 unless after_reach_end */
	uint64_t after_offset;
} tlog_records_scan;

/* Reads bytes[0..len) from offset 0 and stops at the first record that
 * does not verify, then looks past it for whole records (above). visit
 * may be NULL; a failure from it stops the scan and is returned, as does
 * KMS_INTERNAL when memory runs out. Otherwise KMS_OK, whatever the file
 * holds: *out says. */
kms_status tlog_records_scan_bytes(const uint8_t *bytes, size_t len, tlog_record_visitor visit,
                                   void *ctx, tlog_records_scan *out) KMS_MUST_USE;

/* Writes the record of entry[0..len) to out[0..cap) and returns its length
 * (TLOG_RECORD_OVERHEAD + len), or 0 when len is not 1..65535 or it does
 * not fit. */
size_t tlog_record_put(uint8_t *out, size_t cap, const uint8_t *entry, size_t len);

#endif
