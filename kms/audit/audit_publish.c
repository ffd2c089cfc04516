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
 * a complete subtree's hash never changes once it exists. */
static kms_status read_hash_locked(void *ctx, unsigned level, uint64_t index,
                                   uint8_t out[static TLOG_HASH_SIZE])
{
	audit_log *log = ctx;
	pthread_rwlock_rdlock(&log->tree_lock);
	kms_status st = tlog_tree_reader(&log->tree, level, index, out);
	pthread_rwlock_unlock(&log->tree_lock);
	return st;
}

kms_status audit_publish(audit_log *log)
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
	uint64_t size = tlog_tree_size(&log->tree);
	st = tlog_tree_root(&log->tree, size, root);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(st);
	KMS_GUARD(tlog_bundles_write(log->public_dir, read_entry_into, log, log->published_size,
	                             size));
	KMS_GUARD(tlog_tiles_write(log->public_dir, read_hash_locked, log, log->published_size,
	                           size));
	KMS_GUARD(tlog_checkpoint_format(log->origin, size, root, NULL, body, sizeof body, &body_len));
	KMS_GUARD(tlog_note_sign(body, body_len, log->origin, log->public_key, sign_in_hsm, log, note,
	                         sizeof note, &note_len));
	KMS_GUARD(tlog_checkpoint_publish(log->public_dir, note, note_len));

	char *copy = strdup(note);
	KMS_ENSURE(copy, KMS_INTERNAL, "audit: out of memory");
	pthread_mutex_lock(&log->lock);
	free(log->checkpoint);
	log->checkpoint = copy;
	log->checkpoint_size = size;
	memcpy(log->checkpoint_root, root, sizeof root);
	log->published_size = size;
	log->last_publish_ms = kms_monotonic_us() / 1000;
	pthread_mutex_unlock(&log->lock);
	return KMS_OK;
}
