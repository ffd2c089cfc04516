/*
 * fuzz_tlog_parse: the tlog parsers of untrusted bytes.
 *
 * Input: a mode byte (mod 4), then
 *   0: a signed note, verified with Go's PeterNeumann test key;
 *   1: a checkpoint body;
 *   2: a width byte (0 means 256), then an entry bundle of that width;
 *   3: a verifier key string;
 *   4: a durable record file (log.bin, tlog_records.h).
 *
 * Invariants: nothing read outside the input (ASan); a failure leaves its
 * output zeroed; what parses is canonical, i.e. formatting the parsed
 * value gives back the exact input bytes (checkpoint, bundle, verifier key
 * with a lowercase key id), and a verified note's body is a prefix of it
 * ending in a newline; the whole records of a record file, written again,
 * are its first bytes, and a bad one is inside the input.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "tests/support/fuzz.h"
#include "common/tlog/tlog_note.h"
#include "common/tlog/tlog_records.h"
#include "common/tlog/tlog_tiles.h"

#define PETER_VKEY "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define MODES 5

static uint8_t scratch[TLOG_BUNDLE_BYTES_MAX];
static char text[TLOG_NOTE_MAX + 1];

static void fuzz_note(const uint8_t *data, size_t size)
{
	tlog_verifier key;
	tlog_note_view view;
	FUZZ_CHECK(tlog_verifier_key_parse(PETER_VKEY, &key) == KMS_OK);
	kms_status st = tlog_note_verify((const char *)data, size, &key, NULL, &view);
	if (st != KMS_OK) {
		FUZZ_CHECK(view.body == NULL && view.body_len == 0);
		return;
	}
	FUZZ_CHECK(view.body == (const char *)data && view.body_len < size);
	FUZZ_CHECK(view.body_len > 0 && view.body[view.body_len - 1] == '\n');
	FUZZ_CHECK(data[view.body_len] == '\n');
}

static void fuzz_checkpoint(const uint8_t *data, size_t size)
{
	tlog_checkpoint cp;
	char origin[TLOG_ORIGIN_MAX + 1];
	size_t len;
	if (tlog_checkpoint_parse((const char *)data, size, NULL, &cp) != KMS_OK) {
		FUZZ_CHECK(cp.origin == NULL && cp.tree_size == 0);
		return;
	}
	FUZZ_CHECK(cp.origin_len >= 1 && cp.origin_len <= TLOG_ORIGIN_MAX);
	FUZZ_CHECK(cp.tree_size <= TLOG_TREE_SIZE_MAX);
	memcpy(origin, cp.origin, cp.origin_len);
	origin[cp.origin_len] = '\0';
	char *ext = (char *)scratch;
	memcpy(ext, cp.extensions, cp.extensions_len);
	ext[cp.extensions_len] = '\0';
	FUZZ_CHECK(tlog_checkpoint_format(origin, cp.tree_size, cp.root, ext, text, sizeof text,
	                                  &len) == KMS_OK);
	FUZZ_CHECK(len == size && memcmp(text, data, size) == 0);
}

static void fuzz_bundle(const uint8_t *data, size_t size)
{
	static tlog_entry_span spans[TLOG_TILE_WIDTH];
	if (size < 1)
		return;
	unsigned width = data[0] ? data[0] : TLOG_TILE_WIDTH;
	data++;
	size--;
	if (tlog_bundle_parse(data, size, width, 0, "tile/entries/000", spans) != KMS_OK) {
		FUZZ_CHECK(spans[0].bytes == NULL && spans[0].len == 0);
		return;
	}
	size_t off = 0;
	for (unsigned i = 0; i < width; i++) {
		FUZZ_CHECK(spans[i].len >= TLOG_ENTRY_MIN && spans[i].len <= TLOG_ENTRY_MAX);
		FUZZ_CHECK(spans[i].bytes == data + off + TLOG_ENTRY_LENGTH_SIZE);
		scratch[off] = (uint8_t)(spans[i].len >> 8);
		scratch[off + 1] = (uint8_t)spans[i].len;
		memcpy(scratch + off + 2, spans[i].bytes, spans[i].len);
		off += TLOG_ENTRY_LENGTH_SIZE + spans[i].len;
	}
	FUZZ_CHECK(off == size && memcmp(scratch, data, size) == 0);
}

static void fuzz_vkey(const uint8_t *data, size_t size)
{
	tlog_verifier v, again;
	char formatted[TLOG_VERIFIER_KEY_MAX];
	if (size >= sizeof text)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	size = strlen(text); /* a C string: it ends at the first NUL */
	if (tlog_verifier_key_parse(text, &v) != KMS_OK) {
		FUZZ_CHECK(v.name[0] == '\0' && v.key_id == 0);
		return;
	}
	FUZZ_CHECK(tlog_verifier_key_format(v.name, v.public_key, formatted) == KMS_OK);
	FUZZ_CHECK(tlog_verifier_key_parse(formatted, &again) == KMS_OK);
	FUZZ_CHECK(memcmp(&v, &again, sizeof v) == 0);
	/* The same string, but for the case of the key id's hex digits. */
	FUZZ_CHECK(strlen(formatted) == size && strcasecmp(formatted, text) == 0);
	size_t name_len = strlen(v.name);
	FUZZ_CHECK(memcmp(formatted, text, name_len + 1) == 0);
	FUZZ_CHECK(strcmp(formatted + name_len + 1 + TLOG_KEY_ID_HEX_LEN,
	                  text + name_len + 1 + TLOG_KEY_ID_HEX_LEN) == 0);
}

typedef struct records_ctx {
	const uint8_t *data;
	size_t size;
	uint64_t next;
	uint64_t offset;
} records_ctx;

static kms_status records_visit(void *ctx, uint64_t index, uint64_t offset, const uint8_t *entry,
                                size_t len, const uint8_t hash[static TLOG_HASH_SIZE])
{
	records_ctx *c = ctx;
	FUZZ_CHECK(index == c->next && offset == c->offset);
	FUZZ_CHECK(entry == c->data + offset + TLOG_ENTRY_LENGTH_SIZE &&
	           hash == entry + len);
	size_t put = tlog_record_put(scratch, sizeof scratch, entry, len);
	FUZZ_CHECK(put == TLOG_RECORD_OVERHEAD + len && offset + put <= c->size);
	FUZZ_CHECK(memcmp(scratch, c->data + offset, put) == 0);
	c->next++;
	c->offset += put;
	return KMS_OK;
}

static void fuzz_records(const uint8_t *data, size_t size)
{
	records_ctx c = { .data = data, .size = size };
	tlog_records_scan scan;
	FUZZ_CHECK(tlog_records_scan_bytes(data, size, records_visit, &c, &scan) == KMS_OK);
	FUZZ_CHECK(scan.whole == c.next && scan.whole_bytes == c.offset);
	FUZZ_CHECK(scan.whole_bytes <= size);
	FUZZ_CHECK((scan.fault == TLOG_RECORD_WHOLE) == (scan.whole_bytes == size));
	FUZZ_CHECK(scan.after_reach_end == (scan.whole_after > 0));
	FUZZ_CHECK(scan.fault != TLOG_RECORD_WHOLE || !scan.after_reach_end);
	if (scan.after_reach_end) {
		/* From there on, every record is whole, to the very end. */
		tlog_records_scan rest;
		FUZZ_CHECK(scan.after_offset > scan.whole_bytes && scan.after_offset < size);
		FUZZ_CHECK(tlog_records_scan_bytes(data + scan.after_offset, size - scan.after_offset,
		                                   NULL, NULL, &rest) == KMS_OK);
		FUZZ_CHECK(rest.fault == TLOG_RECORD_WHOLE && rest.whole == scan.whole_after);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0] % MODES;
	data++;
	size--;
	switch (mode) {
	case 0:
		fuzz_note(data, size);
		break;
	case 1:
		fuzz_checkpoint(data, size);
		break;
	case 2:
		fuzz_bundle(data, size);
		break;
	case 3:
		fuzz_vkey(data, size);
		break;
	default:
		fuzz_records(data, size);
		break;
	}
	kms_error_clear();
	return 0;
}
