/*
 * bench_store: the key metadata store at scale (docs/benchmarks.md, "The
 * store at scale"). Creating keys one transaction each (the baseline: what
 * CreateKey does, one fsync per key) beside store_keys_insert_batch at
 * batches of 1, 100 and 1000 keys per transaction, in the same run, on one
 * store that already holds preload keys; the baseline again from 4 threads
 * (writers queue on SQLite's write lock); then a ListKeys page of 100 read
 * at the start, the middle and the end of the keys.
 *
 *   build/tests/bench/bench_store [dir] [preload] [max_keys] [seconds]
 *
 * dir (default: a new directory under /tmp, removed at the end) is the data
 * directory; it must be on the disk kmsd would use, since every commit is
 * an fsync (synchronous=FULL). preload keys (default 100000) are inserted
 * first in batches of 1000. Each cell stops after max_keys keys (default
 * 20000) or seconds (default 5), whichever comes first.
 * A benchmark, not a test: it fails only when an insert or a read fails.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "kms/store/store.h"

#define BATCH_MAX 1000
#define THREADS_MAX 4
#define LIST_PAGE 100
#define LIST_READS 200

static store *st;
static atomic_uint_fast64_t next_key = 1;
static uint64_t max_keys = 20000;
static double max_seconds = 5;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_store: %s failed: %s\n", what, kms_error_message());
	exit(1);
}

/* The next key, as CreateKey would write it (hsm-resident, ready). */
static void key_make(store_key *k, store_version *v1)
{
	uint64_t n = atomic_fetch_add(&next_key, 1);
	memset(k, 0, sizeof *k);
	snprintf(k->id, sizeof k->id, "k-%032llx", (unsigned long long)n);
	snprintf(k->description, sizeof k->description, "bench key %llu", (unsigned long long)n);
	k->spec = KEY_SPEC_AES_256;
	k->usage = KEY_USAGE_ENCRYPT_DECRYPT;
	k->state = KEY_STATE_ENABLED;
	k->lifecycle = KEY_LIFECYCLE_READY;
	k->primary_version = 1;
	k->created_at = 1;
	snprintf(k->region, sizeof k->region, "bench-1");
	k->protection = KEY_PROTECTION_HSM_RESIDENT;
	*v1 = (store_version){ .version = 1, .created_at = 1, .state = VERSION_STATE_ACTIVE };
}

/* One transaction of batch keys: store_keys_insert_batch, or (batch 0)
 * store_key_insert and store_version_insert, one key. */
static void txn(size_t batch)
{
	static _Thread_local store_key keys[BATCH_MAX];
	static _Thread_local store_version v1s[BATCH_MAX];
	size_t n = batch ? batch : 1;
	for (size_t i = 0; i < n; i++)
		key_make(&keys[i], &v1s[i]);
	if (store_begin(st) != KMS_OK)
		die("BEGIN");
	size_t failed;
	kms_status status = batch ? store_keys_insert_batch(st, keys, NULL, v1s, n, &failed)
	                          : store_key_insert(st, &keys[0], "");
	if (status == KMS_OK && !batch)
		status = store_version_insert(st, keys[0].id, &v1s[0]);
	if (status != KMS_OK) {
		store_rollback(st);
		die("insert");
	}
	if (store_commit(st) != KMS_OK)
		die("COMMIT");
}

typedef struct cell {
	size_t batch;
	double deadline;
	uint64_t quota;            /* keys this thread may insert */
	uint64_t done;
} cell;

static void *cell_run(void *arg)
{
	cell *c = arg;
	size_t per = c->batch ? c->batch : 1;
	while (c->done + per <= c->quota && now_s() < c->deadline) {
		txn(c->batch);
		c->done += per;
	}
	return NULL;
}

/* Runs one cell on threads threads; prints keys/s. */
static void cell_print(const char *name, size_t batch, int threads)
{
	cell cells[THREADS_MAX];
	pthread_t tids[THREADS_MAX];
	double start = now_s();
	for (int i = 0; i < threads; i++) {
		cells[i] = (cell){ .batch = batch, .deadline = start + max_seconds,
			           .quota = max_keys / (uint64_t)threads };
		if (pthread_create(&tids[i], NULL, cell_run, &cells[i]) != 0)
			die("pthread_create");
	}
	uint64_t done = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(tids[i], NULL);
		done += cells[i].done;
	}
	double seconds = now_s() - start;
	uint64_t fsyncs = batch ? done / batch : done;
	printf("%-44s %9llu keys %6.2f s %10.0f keys/s %8.0f commits/s\n", name,
	       (unsigned long long)done, seconds, (double)done / seconds,
	       (double)fsyncs / seconds);
	fflush(stdout);
}

static void preload(uint64_t n)
{
	double start = now_s();
	for (uint64_t done = 0; done < n; done += BATCH_MAX)
		txn(n - done < BATCH_MAX ? (size_t)(n - done) : BATCH_MAX);
	printf("preloaded %llu keys in batches of %d: %.1f s\n", (unsigned long long)n, BATCH_MAX,
	       now_s() - start);
}

/* Reads LIST_READS pages of LIST_PAGE keys after key number at; prints
 * the mean time per page. */
static void list_print(const char *where, uint64_t at)
{
	static store_key rows[LIST_PAGE];
	char after[KMS_KEYID_TEXT_SIZE];
	snprintf(after, sizeof after, "k-%032llx", (unsigned long long)at);
	double start = now_s();
	for (int i = 0; i < LIST_READS; i++) {
		size_t n;
		if (store_key_list(st, after, LIST_PAGE, rows, &n) != KMS_OK || n != LIST_PAGE)
			die("list keys");
	}
	printf("ListKeys page of %d after key %-10llu (%s)  %8.1f us/page\n", LIST_PAGE,
	       (unsigned long long)at, where, (now_s() - start) / LIST_READS * 1e6);
}

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/bench-store-XXXXXX";
	const char *dir = argc > 1 && argv[1][0] ? argv[1] : NULL;
	uint64_t n_preload = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
	if (argc > 3)
		max_keys = strtoull(argv[3], NULL, 10);
	if (argc > 4)
		max_seconds = atof(argv[4]);
	if (max_keys < BATCH_MAX * THREADS_MAX || max_seconds <= 0) {
		fprintf(stderr, "bench_store: max_keys must be at least %d, seconds above 0\n",
		        BATCH_MAX * THREADS_MAX);
		return 2;
	}
	if (!dir && !(dir = mkdtemp(tmp))) {
		perror("bench_store: mkdtemp");
		return 1;
	}
	bool created;
	if (store_open(dir, &st, &created) != KMS_OK)
		die("store_open");
	preload(n_preload);
	printf("cells: each at most %llu keys or %.0f s, on a store of %llu keys and growing\n",
	       (unsigned long long)max_keys, max_seconds, (unsigned long long)n_preload);
	cell_print("one key per transaction (baseline)", 0, 1);
	cell_print("store_keys_insert_batch, batch 1", 1, 1);
	cell_print("store_keys_insert_batch, batch 100", 100, 1);
	cell_print("store_keys_insert_batch, batch 1000", 1000, 1);
	cell_print("one key per transaction, 4 threads", 0, 4);
	cell_print("store_keys_insert_batch 100, 4 threads", 100, 4);
	uint64_t total = atomic_load(&next_key) - 1;
	list_print("the start", 0);
	list_print("the middle", total / 2);
	list_print("the end", total - LIST_PAGE);
	store_close(st);
	if (dir == tmp) {
		char cmd[64];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_store: could not remove %s\n", tmp);
	}
	return 0;
}
