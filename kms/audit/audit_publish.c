/*
 * audit_publish.c: the audit log's public face. The HSM signing key, and
 * for a tree size: the entry bundles and hash tiles (C2SP tlog-tiles) and a
 * checkpoint (C2SP tlog-checkpoint) signed as a C2SP signed-note.
 *
 * Order matters for mirrors: every tile and bundle a checkpoint covers is
 * durable on disk before the checkpoint that names its size replaces the
 * old one (tlog_checkpoint_publish renames atomically).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "kms/audit/audit_internal.h"
#include "common/error.h"
#include "common/tlog/tlog_note.h"
#include "common/tlog/tlog_tiles.h"

#define CHECKPOINT_BODY_MAX 2048
#define CHECKPOINT_NOTE_MAX 4096

_Static_assert(AUDIT_VERIFIER_KEY_MAX >= TLOG_VERIFIER_KEY_MAX, "verifier key buffer");

kms_status audit_signing_key(audit_log *log)
{
	static const char id[] = AUDIT_SIGNING_KEY_ID; /* not 20 bytes: not a key version */
	memcpy(log->signing_key.bytes, id, sizeof id - 1);
	log->signing_key.len = sizeof id - 1;
	bool exists = false;
	KMS_GUARD(hsm_object_exists(log->hsm, &log->signing_key, &exists));
	if (!exists) {
		KMS_GUARD(hsm_ed25519_create(log->hsm, &log->signing_key, "kms audit log signing key"));
		kms_log("info", "audit: created the log's Ed25519 signing key in the HSM");
	}
	KMS_GUARD(hsm_ed25519_public(log->hsm, &log->signing_key, log->public_key));
	KMS_GUARD(tlog_key_name_check(log->origin, strlen(log->origin)));
	return tlog_verifier_key_format(log->origin, log->public_key, log->verifier_key);
}

static kms_status sign_in_hsm(void *ctx, const uint8_t *msg, size_t len,
                              uint8_t sig[static TLOG_ED25519_SIGNATURE_SIZE])
{
	audit_log *log = ctx;
	return hsm_ed25519_sign(log->hsm, &log->signing_key, msg, len, sig);
}

/* Bundles read straight from log.bin; the offsets under a short read lock. */
static kms_status read_entry_into(void *ctx, uint64_t index, uint8_t *buf, size_t cap,
                                  size_t *len)
{
	audit_log *log = ctx;
	char *entry = NULL;
	size_t n = 0;
	pthread_rwlock_rdlock(&log->tree_lock);
	kms_status read = audit_read_entry(log, index, &entry, &n);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(read);
	kms_status st = KMS_OK;
	if (n > cap)
		st = KMS_FAIL(KMS_INTERNAL, "audit: entry %llu is %zu bytes", (unsigned long long)index, n);
	else
		memcpy(buf, entry, n);
	free(entry);
	*len = st == KMS_OK ? n : 0;
	return st;
}

/* Hashes of the tree, each under a short read lock: the tree only grows, so
 * a complete subtree's hash never changes once it exists (in memory, or in
 * a full tile on disk once it has been let go). */
static kms_status read_hash_locked(void *ctx, unsigned level, uint64_t index,
                                   uint8_t out[static TLOG_HASH_SIZE])
{
	audit_log *log = ctx;
	pthread_rwlock_rdlock(&log->tree_lock);
	kms_status st = audit_tree_reader(&log->tree, level, index, out);
	pthread_rwlock_unlock(&log->tree_lock);
	return st;
}

/* log.pos: magic, then the tree size and the byte offset of its first
 * record, big-endian. */
#define POSITION_MAGIC "KMSAPOS1"
#define POSITION_LEN (sizeof POSITION_MAGIC - 1 + 16)

static void put_u64be(uint8_t *out, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

static uint64_t get_u64be(const uint8_t *in)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | in[i];
	return v;
}

kms_status audit_position_read(audit_log *log, uint64_t *size, uint64_t *offset)
{
	uint8_t *bytes = NULL;
	size_t len = 0;
	KMS_GUARD(tlog_file_read(log->dir, AUDIT_POSITION_FILE, POSITION_LEN, &bytes, &len));
	bool ok = len == POSITION_LEN && memcmp(bytes, POSITION_MAGIC, 8) == 0;
	if (ok) {
		*size = get_u64be(bytes + 8);
		*offset = get_u64be(bytes + 16);
	}
	free(bytes);
	KMS_ENSURE(ok, KMS_FAILED_PRECONDITION, "%s is not %zu bytes starting %s",
	           AUDIT_POSITION_FILE, (size_t)POSITION_LEN, POSITION_MAGIC);
	return KMS_OK;
}

/* After a checkpoint of `size`: where the records of the last whole tile
 * below it start, for the next start-up (docs/audit-log.md, "Memory and
 * start-up"). */
static kms_status write_position(audit_log *log, uint64_t p)
{
	uint8_t bytes[POSITION_LEN];
	uint64_t offset = 0;
	pthread_rwlock_rdlock(&log->tree_lock);
	kms_status st = audit_tree_offset(&log->tree, p, &offset);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(st);
	memcpy(bytes, POSITION_MAGIC, 8);
	put_u64be(bytes + 8, p);
	put_u64be(bytes + 16, offset);
	return tlog_file_write(log->dir, AUDIT_POSITION_FILE, bytes, sizeof bytes, false);
}

/* The checkpoint in public/, verified with our own public key under the
 * origin it names (an older [audit] origin signed with the same key still
 * counts: the history it signed must not shrink). */
static kms_status verify_own_checkpoint(audit_log *log, const char *note, size_t len,
                                        tlog_checkpoint *cp)
{
	tlog_note_view view;
	tlog_verifier key;
	char origin[TLOG_KEY_NAME_MAX + 1];
	char vkey[TLOG_VERIFIER_KEY_MAX];
	KMS_GUARD(tlog_note_body(note, len, "public/checkpoint", &view));
	KMS_GUARD(tlog_checkpoint_parse(view.body, view.body_len, "public/checkpoint", cp));
	KMS_ENSURE(cp->origin_len <= TLOG_KEY_NAME_MAX, KMS_FAILED_PRECONDITION,
	           "audit: public/checkpoint names an origin of %zu bytes", cp->origin_len);
	memcpy(origin, cp->origin, cp->origin_len);
	origin[cp->origin_len] = '\0';
	KMS_GUARD(tlog_verifier_key_format(origin, log->public_key, vkey));
	KMS_GUARD(tlog_verifier_key_parse(vkey, &key));
	KMS_GUARD(tlog_note_verify(note, len, &key, "public/checkpoint", &view));
	KMS_GUARD(tlog_checkpoint_parse(view.body, view.body_len, "public/checkpoint", cp));
	if (cp->origin_len != strlen(log->origin) || memcmp(cp->origin, log->origin, cp->origin_len))
		kms_log("warn", "audit: public/checkpoint was signed for origin %s; this kmsd signs "
		         "for %s from now on (verifiers need the new verifier key)", origin,
		         log->origin);
	return KMS_OK;
}

kms_status audit_load_signed(audit_log *log)
{
	uint8_t *note = NULL;
	size_t len = 0;
	tlog_checkpoint cp;
	log->signed_size = 0;
	tlog_empty_root(log->signed_root);
	kms_status st = tlog_file_read(log->public_dir, TLOG_CHECKPOINT_PATH, CHECKPOINT_NOTE_MAX,
	                               &note, &len);
	if (st == KMS_NOT_FOUND)
		return KMS_OK; /* a new log: nothing signed yet */
	KMS_GUARD(st);
	char *text = malloc(len + 1);
	if (text == NULL) {
		free(note);
		return KMS_FAIL(KMS_INTERNAL, "audit: out of memory");
	}
	memcpy(text, note, len);
	text[len] = '\0';
	free(note);
	st = verify_own_checkpoint(log, text, len, &cp);
	if (st != KMS_OK) {
		char why[KMS_ERROR_MAX];
		snprintf(why, sizeof why, "%s", kms_error_message());
		free(text);
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: %s: restore public/ from a mirror "
		                "(docs/audit-log.md)", why);
	}
	log->signed_size = cp.tree_size;
	memcpy(log->signed_root, cp.root, AUDIT_HASH_LEN);
	free(log->checkpoint);
	log->checkpoint = text;
	log->checkpoint_size = cp.tree_size;
	memcpy(log->checkpoint_root, cp.root, AUDIT_HASH_LEN);
	return KMS_OK;
}

/* Never a checkpoint smaller than one already signed, nor another root at
 * the same size: that would be a rollback signed with the log's own key. */
static kms_status check_not_rollback(const audit_log *log, uint64_t size,
                                     const uint8_t root[static TLOG_HASH_SIZE])
{
	if (size > log->signed_size || (size == log->signed_size &&
	                                 tlog_hash_equal(root, log->signed_root)))
		return KMS_OK;
	kms_log("error", "audit: refused to sign a checkpoint of size %llu: one of size %llu "
	         "was signed already", (unsigned long long)size,
	         (unsigned long long)log->signed_size);
	return KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: refused to sign a checkpoint of size %llu "
	                "below the signed size %llu", (unsigned long long)size,
	                (unsigned long long)log->signed_size);
}

static kms_status publish(audit_log *log);

/* A checkpoint note of size entries with this root is now public/'s:
 * the log's latest and largest signed (published_size never goes down).
 * Then where its last whole tile's records start is recorded, and the
 * hashes now in full tiles on disk go. */
static kms_status take_note(audit_log *log, const char *note, uint64_t size,
                            const uint8_t root[static AUDIT_HASH_LEN])
{
	char *copy = strdup(note);
	KMS_ENSURE(copy, KMS_INTERNAL, "audit: out of memory");
	pthread_mutex_lock(&log->lock);
	free(log->checkpoint);
	log->checkpoint = copy;
	log->checkpoint_size = size;
	memcpy(log->checkpoint_root, root, AUDIT_HASH_LEN);
	if (log->published_size < size)
		log->published_size = size;
	log->signed_size = size;
	memcpy(log->signed_root, root, AUDIT_HASH_LEN);
	log->signed_at_ms = kms_monotonic_us() / 1000;
	pthread_mutex_unlock(&log->lock);
	uint64_t p = audit_floor_tile(size);
	KMS_GUARD(write_position(log, p));
	pthread_rwlock_wrlock(&log->tree_lock);
	audit_tree_drop(&log->tree, p);
	pthread_rwlock_unlock(&log->tree_lock);
	return KMS_OK;
}

kms_status audit_publish(audit_log *log)
{
	pthread_mutex_lock(&log->publish_lock);
	kms_status st = publish(log);
	pthread_mutex_unlock(&log->publish_lock);
	return st;
}

/* Writes the tiles and bundles of the current size, signs its checkpoint
 * and takes it (take_note). */
static kms_status publish(audit_log *log)
{
	char body[CHECKPOINT_BODY_MAX];
	char note[CHECKPOINT_NOTE_MAX];
	size_t body_len, note_len;
	uint8_t root[TLOG_HASH_SIZE];
	kms_status st = KMS_OK;

	/* A snapshot of the size and its root; the files are then written
	 * without holding the lock through their fsyncs, so the writer keeps
	 * committing batches meanwhile. */
	pthread_rwlock_rdlock(&log->tree_lock);
	uint64_t size = log->tree.size;
	st = tlog_root_at(audit_tree_reader, &log->tree, size, root);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(st);
	KMS_GUARD(check_not_rollback(log, size, root));
	KMS_GUARD(tlog_bundles_write(log->public_dir, read_entry_into, log, log->published_size,
	                             size));
	KMS_GUARD(tlog_tiles_write(log->public_dir, read_hash_locked, log, log->published_size,
	                           size));
	KMS_GUARD(tlog_checkpoint_format(log->origin, size, root, NULL, body, sizeof body, &body_len));
	KMS_GUARD(tlog_note_sign(body, body_len, log->origin, log->public_key, sign_in_hsm, log, note,
	                         sizeof note, &note_len));
	KMS_GUARD(tlog_checkpoint_publish(log->public_dir, note, note_len));
	KMS_GUARD(take_note(log, note, size, root));
	pthread_mutex_lock(&log->lock);
	log->last_publish_ms = log->signed_at_ms;
	pthread_mutex_unlock(&log->lock);
	return KMS_OK;
}

kms_status audit_publish_tiles(audit_log *log)
{
	pthread_mutex_lock(&log->publish_lock);
	pthread_rwlock_rdlock(&log->tree_lock);
	uint64_t size = log->tree.size;
	pthread_rwlock_unlock(&log->tree_lock);
	kms_status st = KMS_OK;
	if (size > log->published_size) {
		st = tlog_bundles_write(log->public_dir, read_entry_into, log, log->published_size,
		                        size);
		if (st == KMS_OK)
			st = tlog_tiles_write(log->public_dir, read_hash_locked, log,
			                      log->published_size, size);
		if (st == KMS_OK) {
			log->published_size = size;
			pthread_rwlock_wrlock(&log->tree_lock);
			audit_tree_drop(&log->tree, audit_floor_tile(size));
			pthread_rwlock_unlock(&log->tree_lock);
		}
	}
	pthread_mutex_unlock(&log->publish_lock);
	return st;
}

/* audit_install under publish_lock. */
static kms_status install(audit_log *log, const char *note, uint64_t size)
{
	tlog_checkpoint cp;
	uint8_t root[TLOG_HASH_SIZE];
	size_t len = strlen(note);
	if (size <= log->checkpoint_size)
		return KMS_OK;
	KMS_GUARD(verify_own_checkpoint(log, note, len, &cp));
	KMS_ENSURE(cp.tree_size == size, KMS_FAILED_PRECONDITION,
	           "audit: the fleet's checkpoint names %llu entries, its row %llu",
	           (unsigned long long)cp.tree_size, (unsigned long long)size);
	pthread_rwlock_rdlock(&log->tree_lock);
	uint64_t have = log->tree.size;
	kms_status st = size <= have ? tlog_root_at(audit_tree_reader, &log->tree, size, root)
	                             : KMS_OK;
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(st);
	KMS_ENSURE(size <= have, KMS_INTERNAL, "audit: the fleet's checkpoint of %llu entries is "
	           "past this copy's %llu", (unsigned long long)size, (unsigned long long)have);
	KMS_ENSURE(tlog_hash_equal(root, cp.root), KMS_FAILED_PRECONDITION,
	           "audit: the fleet's signed checkpoint of %llu entries names another root than "
	           "this replica's copy of the same entries: the fleet's log or this copy was "
	           "changed", (unsigned long long)size);
	/* The tiles of exactly this size (its partial tiles), then the note. */
	KMS_GUARD(tlog_bundles_write(log->public_dir, read_entry_into, log, log->checkpoint_size,
	                             size));
	KMS_GUARD(tlog_tiles_write(log->public_dir, read_hash_locked, log, log->checkpoint_size,
	                           size));
	KMS_GUARD(tlog_checkpoint_publish(log->public_dir, note, len));
	/* The checkpoint's age on /metrics counts from here for this copy. */
	return take_note(log, note, size, root);
}

kms_status audit_install(audit_log *log, const char *note, uint64_t size)
{
	pthread_mutex_lock(&log->publish_lock);
	kms_status st = install(log, note, size);
	pthread_mutex_unlock(&log->publish_lock);
	return st;
}
