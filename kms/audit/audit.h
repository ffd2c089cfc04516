/*
 * audit.h: the audit log, a transparency log of one JSON entry per request
 * (docs/audit-log.md).
 *
 * Durable record: <dir>/log.bin, records of
 *     u16 BE length | entry (1..65535 bytes) | 32-byte RFC 6962 leaf hash
 * appended by one writer thread in batches (group commit): a caller of
 * audit_append waits until the batch holding its entry is written and
 * fdatasync'ed, so no reply leaves before its entry is durable (the
 * format is common/tlog/tlog_records.h). audit_open cuts a bad record only
 * when it is a torn write: past the largest checkpoint ever signed (read
 * back from public/checkpoint) and with nothing whole after it. Any other
 * bad record, or a log.bin shorter than or different from what was signed,
 * stops audit_open (KMS_FAILED_PRECONDITION, naming the record and its
 * offset); `kms-admin audit repair` rebuilds it from the entry bundles.
 * History is never cut below what was signed, and no checkpoint smaller
 * than one already signed is ever signed (docs/audit-log.md).
 *
 * Published: <dir>/public/ holds C2SP tlog-tiles (tile/..., tile/entries/...)
 * and a C2SP tlog-checkpoint `checkpoint`, signed as a C2SP signed-note with
 * an Ed25519 key held in the HSM (created on first start), rewritten at least
 * every checkpoint_ms while entries arrive. Anyone may mirror public/.
 *
 * Fail closed: if a batch cannot be made durable (disk full, I/O error) its
 * callers get KMS_UNAVAILABLE, the file is cut back to its last durable
 * length, and the log is marked unhealthy until a later batch succeeds.
 *
 * Thread-safe. Blocks on the disk (append) and the HSM (open, publish).
 */
#ifndef KMS_AUDIT_H
#define KMS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "hsm/hsm.h"
#include "common/histogram.h"

#define AUDIT_HASH_LEN 32
#define AUDIT_ORIGIN_MAX 128
#define AUDIT_VERIFIER_KEY_MAX 320
#define AUDIT_SIGNING_KEY_ID "kms-audit-signing-key-v1"

typedef struct audit_log audit_log;

typedef struct audit_config {
	const char *dir;           /* created if missing (mode 0700) */
	const char *origin;        /* checkpoint origin and signer name */
	hsm *hsm;                  /* holds the signing key */
	unsigned checkpoint_ms;    /* publish at least this often while entries arrive */
	bool sync;                 /* fdatasync each batch; false only for benchmarks */
	/* Called once (from the background check's thread) when the records
	 * below the point audit_open resumed from turn out damaged; the log
	 * refuses every entry from then on. kmsd stops. May be NULL. */
	void (*on_damage)(void *ctx);
	void *damage_ctx;
	/* A fleet's log (docs/scale-out.md, "One audit log for the fleet"):
	 * NULL for a log of this kmsd's own. Given a shared store, an entry is
	 * durable once it is in the store's audit_pending (a batch is one
	 * transaction there, not an fdatasync of log.bin); the replica holding
	 * the store's sequencer lease numbers the entries and signs the
	 * checkpoints; every replica, this one too, copies the numbered
	 * entries into dir (log.bin, public/ with the lease holder's
	 * checkpoint) and serves them from there. */
	struct store *fleet;
	unsigned fleet_lease_ms;   /* the lease's term; 0: AUDIT_FLEET_LEASE_MS */
} audit_config;

#define AUDIT_FLEET_LEASE_MS 3000

/* Opens (or creates) the log and locks log.bin (flock, exclusive: a second
 * kmsd or a running repair fails here), finds or creates the signing key,
 * reads the signed checkpoint, resumes the tree from the tiles on disk at
 * the point log.pos names (or reads all of log.bin when it cannot),
 * recovers the records past it (cuts a torn tail, refuses damage),
 * publishes a checkpoint and starts the writer, and a background check of
 * the records below that point against the tiles (on_damage).
 * KMS_FAILED_PRECONDITION with one line when the log is damaged. Its time
 * and memory do not grow with the log's length (docs/audit-log.md). */
kms_status audit_open(const audit_config *cfg, audit_log **out) KMS_MUST_USE;

/* Stops the writer after the entries already queued, publishes a final
 * checkpoint and frees everything. NULL is ignored. */
void audit_close(audit_log *log);

/* Appends one entry and returns once it is durable. KMS_UNAVAILABLE with
 * the reason if it could not be written. */
kms_status audit_append(audit_log *log, const char *entry, size_t len) KMS_MUST_USE;

/* As audit_append, for the outcome entry of a control-plane change whose
 * intent entry is already durable: it may use the room every other batch
 * leaves free past the end of log.bin (AUDIT_OUTCOME_RESERVE), so a change
 * that was applied does not lose its outcome to a disk that filled up in
 * between. Every other entry is refused unless that room is still free. */
kms_status audit_append_outcome(audit_log *log, const char *entry, size_t len) KMS_MUST_USE;

/* Called once per audit_append_async entry, on the audit writer thread,
 * when its batch settled: st is KMS_OK once the entry is durable, else
 * KMS_UNAVAILABLE with why (one line, no secrets). It must not block on
 * anything but short locks: every entry of the next batch waits for it. */
typedef void (*audit_done_fn)(void *arg, kms_status st, const char *why);

/* As audit_append (or audit_append_outcome when outcome is true), without
 * waiting: the entry is copied and queued, and done(arg, ...) is called
 * later from the writer thread. Returns KMS_OK when queued (then done is
 * called exactly once, also while the log closes); any other status means
 * nothing was queued and done will not be called. Waits only while the
 * queue is full (AUDIT_QUEUE_MAX entries), for the batch being written. */
kms_status audit_append_async(audit_log *log, const char *entry, size_t len, bool outcome,
                              audit_done_fn done, void *arg) KMS_MUST_USE;

/* An entry a worker adds to the fleet's database in its change's own
 * transaction (store.h, store_companion), watched until numbered like the
 * writer's own: added before the commit (*token: 0 when it is not
 * watched), then settled once the commit returned (a slot the copy
 * emptied meanwhile, and another entry took, is left alone). */
void audit_watch_add(audit_log *log, const char *entry, size_t len, uint64_t *token);
void audit_watch_settled(audit_log *log, uint64_t token, bool committed, int64_t id);

/* As audit_append_async, with the request's record (store.h; malloc'ed,
 * taken over whatever this returns: freed once written or not), added to
 * the fleet's database in the entry's transaction. When the same request
 * was recorded by another run first (it ran on two replicas at once), that
 * record stays, this entry is added all the same, and kmsd's log says so.
 * Only on a fleet log (audit_is_fleet); elsewhere the record is dropped. */
struct store_request_record;
kms_status audit_append_recorded(audit_log *log, const char *entry, size_t len, bool outcome,
                                 struct store_request_record *record, audit_done_fn done,
                                 void *arg) KMS_MUST_USE;

/* True when the log is the fleet's (audit_config.fleet). */
bool audit_is_fleet(const audit_log *log);

/* False (with the reason in why) while the last batch failed. */
bool audit_healthy(audit_log *log, char *why, size_t why_cap);

/* Durable entries. */
uint64_t audit_size(audit_log *log);

/* The latest published checkpoint (signed note text, malloc'ed) with its size
 * and root. */
kms_status audit_checkpoint(audit_log *log, char **note, uint64_t *size,
                            uint8_t root[AUDIT_HASH_LEN]) KMS_MUST_USE;

/* The verifier key in signed-note form, <name>+<8 hex>+<base64(0x01||pub)>. */
void audit_verifier_key(audit_log *log, char out[AUDIT_VERIFIER_KEY_MAX]);

/* RFC 6962 inclusion proof of entry index in the tree of tree_size entries
 * (0: the latest checkpoint's size), and the entry itself. *hashes is
 * malloc'ed (n of them); *entry too. */
kms_status audit_inclusion_proof(audit_log *log, uint64_t index, uint64_t *tree_size,
                                 uint8_t (**hashes)[AUDIT_HASH_LEN], size_t *n,
                                 char **entry, size_t *entry_len) KMS_MUST_USE;

/* RFC 6962 consistency proof between old_size and new_size (0: latest). */
kms_status audit_consistency_proof(audit_log *log, uint64_t old_size, uint64_t *new_size,
                                   uint8_t (**hashes)[AUDIT_HASH_LEN], size_t *n) KMS_MUST_USE;

/* What the log holds in memory and what it read, for tests and /metrics. */
typedef struct audit_stats {
	uint64_t tree_bytes;       /* hot tiles and offsets: fixed at open */
	uint64_t cache_bytes;      /* full tiles held by the tile cache */
	uint64_t cache_tiles;
	uint64_t hot_entries;      /* leaf hashes in memory (at most AUDIT_HOT_MAX) */
	uint64_t tiles_read;       /* full tiles read back from disk */
	uint64_t open_scanned;     /* log.bin records audit_open read */
	uint64_t resumed_at;       /* the tree size audit_open resumed from (0: the start) */
	uint64_t scrubbed;         /* records below it checked in the background so far */
	bool scrub_done;
	bool damaged;
	uint64_t queued;           /* entries waiting for the writer (the backlog) */
	uint64_t checkpoint_size;  /* the latest signed checkpoint's tree size */
	uint64_t checkpoint_age_ms; /* since this kmsd last signed one */
	bool checkpoint_signed;    /* whether it has signed one since it started */
	bool fleet;                /* a fleet's log (audit_config.fleet) */
	bool sequencer;            /* this replica holds the sequencer's lease */
	uint64_t lease_epoch;      /* the lease's epoch when this replica last held it */
	uint64_t fleet_sequenced;  /* entries this replica numbered */
	kms_hist_snapshot batch_entries; /* entries per batch the writer took */
	kms_hist_snapshot fsync_us;      /* each batch's fdatasync (none with sync = false) */
} audit_stats;

void audit_get_stats(audit_log *log, audit_stats *out);

/* Waits at most timeout_ms for the background check to finish; true when
 * it has (damaged or not: see audit_get_stats). */
bool audit_scrub_wait(audit_log *log, unsigned timeout_ms);

#endif
