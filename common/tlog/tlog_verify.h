/*
 * tlog_verify.h: the offline verifier behind `kms-admin audit verify`.
 *
 * Given a copy of a log directory in the C2SP tlog-tiles layout
 * (tlog_tiles.h) and the log's verifier key, tlog_verify_dir checks it end
 * to end, as a third-party C2SP client would and more:
 *
 *   1. dir/checkpoint is a signed note that verifies with the key, and its
 *      body a well-formed checkpoint (origin, size N, root);
 *   2. every entry bundle a tree of N leaves needs (the full ones and the
 *      partial one at the end) is there and parses strictly; the leaf
 *      hashes of its entries rebuild the tree;
 *   3. every hash tile of a tree of size N (full tiles and the partial tile
 *      at every level) is there and matches the rebuilt tree byte for byte;
 *   4. the rebuilt root is the checkpoint's root;
 *   5. every other tile and bundle file in the directory at an index the
 *      tree reaches: older partial tiles and bundles (tile/0/000.p/205
 *      beside tile/0/000; kmsd keeps them), and files a copy caught before
 *      its checkpoint (tile/0/001 where the tree has tile/0/001.p/44). The
 *      part the checkpoint covers must match the signed tree (a partial is
 *      a prefix of the full data); the part past it is counted, not
 *      verified. Files past the tree's last index and temporary files
 *      (".<name>.tmp-XXXXXX") are not read;
 *   6. with an older checkpoint: it verifies with the same key, names the
 *      same origin, is no larger, and its root is the rebuilt tree's root at
 *      its size (this log only appended to what it had signed).
 *
 * When something fails, the report's one line says what, e.g.
 * "tile/0/000.p/5: hash 3 differs from the entries", "entry 17 in
 * tile/entries/000 differs from the signed tree (hash 17 of tile/0/000)",
 * "checkpoint signature does not verify with key kms.example+1a2b3c4d",
 * "old checkpoint (size 12) is not a prefix of this log". When the entries
 * and the tiles disagree, the checkpoint's signed root decides which of them
 * is wrong.
 *
 * It blocks on file I/O and holds the tree in memory (64 bytes a leaf).
 */
#ifndef KMS_TLOG_VERIFY_H
#define KMS_TLOG_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include <kms/status.h>

#include "common/error.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_note.h"

/* Called once per entry, in order, only after the whole log has verified.
 * A failure stops the walk: tlog_verify_dir returns it, and the report
 * says "entry <index>: <the visitor's message>". */
typedef kms_status (*tlog_entry_visitor)(void *ctx, uint64_t index, const uint8_t *entry,
                                         size_t len);

typedef struct tlog_verify_report {
	char origin[TLOG_ORIGIN_MAX + 1];  /* the checkpoint's, once it verified */
	uint64_t tree_size;
	uint8_t root[TLOG_HASH_SIZE];
	uint64_t entries_checked;
	uint64_t bundles_checked;          /* entry bundle files read */
	uint64_t tiles_checked;            /* hash tile files compared */
	uint64_t extra_checked;            /* other tile and bundle files (step 6) */
	uint64_t past_checkpoint;          /* of those, holding more than it covers */
	bool since_checked;                /* the older checkpoint is a prefix */
	uint64_t since_size;
	char failure[KMS_ERROR_MAX];       /* "" when everything verified */
} tlog_verify_report;

/* Verifies the log in dir with verifier_key ("<name>+<id>+<key>") and,
 * when since_checkpoint is not NULL, that the older signed checkpoint
 * (NUL-terminated note text) is a prefix of it. visit may be NULL.
 *
 * KMS_OK when everything verified. Otherwise report->failure names what
 * failed (also kms_error_message()), and the status says how:
 * KMS_INVALID_ARGUMENT (a bad verifier key), KMS_NOT_FOUND (a file the
 * checkpoint needs is missing), KMS_INVALID_CIPHERTEXT (something does
 * not parse or does not verify), KMS_INTERNAL (I/O or memory), or the
 * visitor's. */
kms_status tlog_verify_dir(const char *dir, const char *verifier_key,
                           const char *since_checkpoint, tlog_entry_visitor visit,
                           void *visit_ctx, tlog_verify_report *report) KMS_MUST_USE;

#endif
