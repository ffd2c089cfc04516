/* audit_internal.h: what audit.c (the writer) and audit_publish.c share. */
#ifndef KMS_AUDIT_INTERNAL_H
#define KMS_AUDIT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "kms/audit/audit.h"
#include "hsm/hsm.h"
#include "common/histogram.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_records.h"
#include "kms/audit/audit_tree.h"

#define AUDIT_RECORD_LEN_BYTES 2
#define AUDIT_LOG_FILE TLOG_RECORDS_FILE
#define AUDIT_PUBLIC_DIR "public"
#define AUDIT_PUBLIC_DIR_MODE 0755 /* and tlog_tiles.c: directories 0755, files 0644 */
#define AUDIT_QUEUE_MAX 4096 /* entries waiting for one batch */
/* Bytes of log.bin allocated past every batch but an outcomes-only one, so
 * that the outcome of a change whose intent is durable always has room: 32
 * outcomes of the largest control-plane entry (well under 2 KiB). */
#define AUDIT_OUTCOME_RESERVE (64u * 1024)
/* How far past a batch log.bin's blocks are allocated at once
 * (fallocate, KEEP_SIZE), so most batches make no allocation call. */
#define AUDIT_ALLOCATE_AHEAD (1024u * 1024)

/* One appender's entry, on its own stack while it waits; the writer sets
 * state (under lock) when the batch holding it is durable or has failed. */
typedef enum audit_waiter_state {
	AUDIT_PENDING,
	AUDIT_DURABLE,
	AUDIT_FAILED,
} audit_waiter_state;

typedef struct audit_waiter {
	const char *entry;
	size_t len;
	bool outcome;           /* may use the room kept for outcomes (audit_append_outcome) */
	bool written;           /* set by the writer alone, outside the lock */
	bool duplicate;         /* its record was there already (kept); written all the same */
	struct store_request_record *record; /* owned; NULL: none */
	audit_waiter_state state;
	/* A blocking appender waits on settled (signalled once, when state
	 * leaves PENDING); an asynchronous one (done != NULL) is not waited
	 * for: the writer calls done once, outside the lock, then frees the
	 * waiter and its entry (allocated with it). */
	pthread_cond_t settled;
	audit_done_fn done;
	void *done_arg;
} audit_waiter;

struct audit_log {
	char dir[1024];
	char public_dir[1100];
	char origin[AUDIT_ORIGIN_MAX + 1];
	hsm *hsm;
	hsm_object_id signing_key;
	uint8_t public_key[HSM_ED25519_PUBLIC_LEN];
	char verifier_key[AUDIT_VERIFIER_KEY_MAX];
	unsigned checkpoint_ms;
	bool sync;
	bool no_reserve;           /* the filesystem cannot fallocate: said once */
	int fd;                    /* log.bin, O_APPEND is not used: we pwrite at `durable_bytes` */

	/* Guarded by lock. */
	pthread_mutex_t lock;
	pthread_cond_t queued;     /* writer waits for work */
	pthread_cond_t room;       /* appenders wait for room in a full queue */
	audit_waiter *queue[AUDIT_QUEUE_MAX];
	size_t n_queued;
	bool healthy;
	char why[200];             /* why the last batch failed */
	bool stop;
	pthread_t writer;
	bool writer_started;
	pthread_cond_t publish_wake; /* a batch became durable */
	pthread_t publisher;
	bool publisher_started;

	/* Guarded by tree_lock: readers (proofs, publish) share it. */
	pthread_rwlock_t tree_lock;
	audit_tree tree;           /* hot tiles in memory, full tiles on disk */
	uint64_t durable_bytes;    /* length of log.bin that is durable */
	uint64_t allocated_to;     /* blocks allocated up to here (0: not known); the writer's */

	/* One publication at a time: the publisher thread, or the writer when
	 * the hot tiles are full (AUDIT_HOT_MAX). */
	pthread_mutex_t publish_lock;

	/* Start-up: where audit_open resumed (log.pos) and what it read. */
	uint64_t resumed_at;       /* entries not read at open: 0 when it read all of log.bin */
	uint64_t resumed_offset;   /* their length in log.bin */
	uint64_t open_scanned;     /* records audit_open read */

	/* The background check of the records below resumed_at (under lock). */
	void (*on_damage)(void *ctx);
	void *damage_ctx;
	pthread_t scrubber;
	bool scrubber_started;
	bool scrub_done;
	bool damaged;              /* the check found damage: refuse everything */
	char damage[400];          /* what it found, one line */
	uint64_t scrubbed;
	pthread_cond_t scrub_settled;

	/* Publishing (publisher thread only; `checkpoint` and the times under lock). */
	uint64_t published_size;
	uint64_t last_publish_ms;
	char *checkpoint;          /* the latest signed note (under lock) */
	uint64_t checkpoint_size;
	uint8_t checkpoint_root[AUDIT_HASH_LEN];

	/* The largest checkpoint ever signed: read back from public/checkpoint
	 * at open (it survives restarts there), raised by each publication.
	 * Recovery never cuts below it and the publisher never signs below it
	 * (publisher thread, or open/close when it is not running). */
	uint64_t signed_size;
	uint8_t signed_root[AUDIT_HASH_LEN];

	/* For /metrics (audit_get_stats): entries per batch the writer took,
	 * each batch's fdatasync, and when a checkpoint was last signed
	 * (monotonic ms, under lock; 0: not since open). */
	kms_hist batch_entries;
	kms_hist fsync_us;
	uint64_t signed_at_ms;

	/* A fleet's log (audit_fleet.c): the shared store, and the thread that
	 * holds or waits for the sequencer's lease and copies the numbered
	 * entries here. */
	struct store *fleet;
	unsigned lease_ms;
	pthread_t fleet_thread;
	bool fleet_started;
	pthread_cond_t fleet_wake;  /* the log stops (under lock) */
	bool sequencer;             /* under lock; the fleet thread writes it */
	uint64_t lease_epoch;       /* under lock */
	uint64_t fleet_sequenced;   /* under lock */
	bool copy_unsynced;         /* entries copied since the last fdatasync (fleet thread) */
	/* This replica's log predates the fleet's, which holds none or part of
	 * it: the first lease holder adds it as the fleet's first entries
	 * (an upgrade from one kmsd on PostgreSQL). Fleet thread. */
	bool fleet_seed;
	/* The entries this replica added to audit_pending and has not yet
	 * seen numbered in its copy, oldest first (a ring: their pending ids
	 * and leaf hashes). The writer adds, the fleet thread removes, both
	 * under watch_lock. An entry that left audit_pending without being
	 * numbered was removed from the database: kmsd stops
	 * (audit_fleet.c, "its own entries"). */
	pthread_mutex_t watch_lock;
	struct audit_watched *watch;
	size_t watch_cap, watch_head, watch_n;
	uint64_t watch_taken;       /* entries the copy took off the ring, ever */
	bool watch_dropped;         /* the ring filled: entries not watched (said once) */
	/* The entries workers added in their changes' own transactions
	 * (audit_watch_add): they commit in any order with the writer's, so
	 * they are watched beside the ring, each on its own. */
	struct audit_watched *side; /* AUDIT_WATCH_SIDE slots, allocated on first use */
	size_t side_n;              /* slots in use */
	uint64_t side_added;        /* entries ever added there: each one's token */
};

#define AUDIT_WATCH_SIDE 64

typedef struct audit_watched {
	int64_t id;
	uint8_t leaf[AUDIT_HASH_LEN];
	bool used;      /* side slots only */
	uint64_t token; /* side slots only: whose slot it is (audit_watch_add) */
} audit_watched;

/* Reads entry i (i < tree size) into a malloc'ed buffer: from log.bin, or
 * from its full entry bundle below the hot tiles. Takes no lock: the
 * caller holds tree_lock (read) or is the writer. */
kms_status audit_read_entry(audit_log *log, uint64_t i, char **entry, size_t *len) KMS_MUST_USE;

/* Writes tiles, bundles and a signed checkpoint for the current tree size
 * (publisher thread, or open/close when it is not running). */
kms_status audit_publish(audit_log *log) KMS_MUST_USE;

/* Finds or creates the HSM signing key and the verifier key string. */
kms_status audit_signing_key(audit_log *log) KMS_MUST_USE;

/* Reads public/checkpoint, if there is one, into signed_size, signed_root
 * and checkpoint: it must verify with this HSM's key (under the origin it
 * names, which may be an older [audit] origin). KMS_FAILED_PRECONDITION
 * when it does not. Called at open, after audit_signing_key. */
kms_status audit_load_signed(audit_log *log) KMS_MUST_USE;

/* log.pos: where the records of a tree size start in log.bin (a multiple
 * of 256 at or below the signed checkpoint), written after each
 * checkpoint. KMS_NOT_FOUND when there is none. */
#define AUDIT_POSITION_FILE "log.pos"
kms_status audit_position_read(audit_log *log, uint64_t *size, uint64_t *offset) KMS_MUST_USE;

/* A fleet's log: the entries numbered first .. first + n - 1, in order,
 * appended to log.bin and the tree, as the writer appends a batch of its
 * own log, but not fdatasync'ed (audit_copy_sync). Fleet thread only. */
kms_status audit_append_numbered(audit_log *log, uint64_t first, const char *const *entries,
                                 const size_t *lens, size_t n) KMS_MUST_USE;

/* A fleet's log: fdatasync of log.bin when entries were copied since the
 * last one (with [audit] sync). Before a checkpoint covering them is
 * signed or taken. Fleet thread only. */
kms_status audit_copy_sync(audit_log *log) KMS_MUST_USE;

/* A fleet's log: writes the tiles and bundles of the current size, signing
 * nothing, and lets the full tiles' hashes go (when the hot tiles fill). */
kms_status audit_publish_tiles(audit_log *log) KMS_MUST_USE;

/* A fleet's log: takes the lease holder's checkpoint note of size
 * entries (size <= the tree's size) as this copy's: it must verify with
 * the log's key and name this copy's root at that size. Writes the tiles
 * and bundles of that size, then the note. Nothing when it is not larger
 * than the checkpoint already here. KMS_FAILED_PRECONDITION when it does
 * not verify or names another root: this copy and the fleet's log differ. */
kms_status audit_install(audit_log *log, const char *note, uint64_t size) KMS_MUST_USE;

/* A fleet's log: the checks at open (this copy is a prefix of the fleet's
 * log) and the fleet thread (audit_fleet.c). */
kms_status audit_fleet_check(audit_log *log) KMS_MUST_USE;
void *audit_fleet_main(void *arg);
/* A batch of the writer, into the fleet's audit_pending. */
kms_status audit_fleet_submit(audit_log *log, audit_waiter *const *batch, size_t n) KMS_MUST_USE;
/* At close: gives the lease up if held. */
void audit_fleet_release(audit_log *log);

/* Damage found after open: logged (fatal), the log refuses every entry
 * from then on, and on_damage is called (kmsd stops). */
void audit_report_damage(audit_log *log, const char *damage);

/* Checks the records below resumed_at against the level-0 tiles on disk,
 * in the background (scrubber thread). */
void *audit_scrub_main(void *arg);


#endif
