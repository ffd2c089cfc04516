/*
 * test_audit_scale: the audit log at any size, in process on a real
 * SoftHSM token (docs/audit-log.md, "Memory and start-up").
 *
 * - restarts_keep_proofs: 20 restarts with entries between them (sizes on
 *   and off tile boundaries). After each, the log resumed where log.pos
 *   says and read only the records past it; the checkpoint's root, the
 *   inclusion proofs of old and new entries (at the latest size and at
 *   older ones) and the consistency proofs are byte for byte those of a
 *   full tree kept in memory by the test; the background check of the
 *   records below finds nothing; at the end `kms-admin audit verify`
 *   verifies the directory, with --since the first checkpoint.
 * - memory_is_flat: 300,000 entries appended with sync off and the
 *   publisher's clock out of the way (the writer publishes when the hot
 *   tiles are full): the module's own accounting stays under
 *   AUDIT_MEMORY_MAX and the hot entries under AUDIT_HOT_MAX at every
 *   sample, and the process's resident memory (/proc/self/statm) grows
 *   less than 8 MiB from 50,000 entries to 300,000 (the whole tree in
 *   memory would be 18 MB more; not under AddressSanitizer, whose
 *   quarantine keeps freed memory resident: there 100,000 entries).
 * - start_up_reads_the_tail: the same log, closed, with 1,000 records
 *   appended to log.bin behind its back (acknowledged, never published):
 *   audit_open reads at most those and the part of a tile before them,
 *   not the 300,000 before; then checks the rest in the background.
 */
#include "tests/support/hsm_test.h"
#include "tests/support/run_bin.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_records.h"
#include "kms/audit/audit.h"
#include "kms/audit/audit_tree.h"

#define ORIGIN "kms.test/audit"
#define RESTARTS 20
#define SCRUB_WAIT_MS 60000
#define FLAT_WARM 50000u
#define FLAT_SAMPLE 10000u
#define RSS_GROWTH_MAX (8u << 20)
#if defined(__SANITIZE_ADDRESS__)
/* No RSS figure under AddressSanitizer, so 100,000 entries: the module's
 * accounting is still sampled across more than one level-2 tile (65,536
 * entries), in a third of the time. */
#define FLAT_ENTRIES 100000u
#define RSS_MEANINGFUL false
#else
#define FLAT_ENTRIES 300000u
#define RSS_MEANINGFUL true
#endif
#define TAIL_RECORDS 1000u
#define CLI_WAIT_MS 60000

static hsm *g_hsm;

static int group_setup(void **state)
{
	(void)state;
	g_hsm = test_open();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hsm_close(g_hsm);
	return 0;
}

static void log_dir(const char *name, char out[static 700])
{
	snprintf(out, 700, "%s/%s", test_env_get().token_dir, name);
}

static audit_log *open_log(const char *dir, bool sync)
{
	audit_config cfg = { .dir = dir, .origin = ORIGIN, .hsm = g_hsm, .checkpoint_ms = 600000,
		             .sync = sync };
	audit_log *log = NULL;
	if (audit_open(&cfg, &log) != KMS_OK)
		fail_msg("audit_open(%s): %s", dir, kms_error_message());
	return log;
}

/* Entry i: JSON of a length that varies with i (60..~250 bytes). */
static size_t make_entry(uint64_t i, char *out, size_t cap)
{
	int n = snprintf(out, cap, "{\"request_id\":\"scale-%llu\",\"pad\":\"%.*s\"}",
	                 (unsigned long long)i, (int)(i * 7 % 190),
	                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

static void append_n(audit_log *log, tlog_tree *ref, uint64_t first, uint64_t n)
{
	char entry[400];
	for (uint64_t i = first; i < first + n; i++) {
		size_t len = make_entry(i, entry, sizeof entry);
		assert_int_equal(audit_append(log, entry, len), KMS_OK);
		if (ref)
			assert_int_equal(tlog_tree_append_entry(ref, (const uint8_t *)entry, len), KMS_OK);
	}
}

static void expect_scrub_clean(audit_log *log)
{
	assert_true(audit_scrub_wait(log, SCRUB_WAIT_MS));
	audit_stats s;
	audit_get_stats(log, &s);
	assert_true(s.scrub_done);
	assert_false(s.damaged);
	assert_int_equal(s.scrubbed, s.resumed_at);
}

/* The inclusion proof of index at tree_size (0: the checkpoint's) equals
 * the full tree's, and the entry is entry index. */
static void expect_inclusion(audit_log *log, const tlog_tree *ref, uint64_t index,
                             uint64_t tree_size)
{
	uint8_t (*got)[AUDIT_HASH_LEN] = NULL;
	size_t n = 0, entry_len = 0;
	char *entry = NULL;
	uint64_t size = tree_size;
	assert_int_equal(audit_inclusion_proof(log, index, &size, &got, &n, &entry, &entry_len),
	                 KMS_OK);
	uint8_t want[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE];
	size_t want_n = 0;
	assert_int_equal(tlog_inclusion_proof(tlog_tree_reader, (void *)ref, size, index, want,
	                                      &want_n), KMS_OK);
	assert_int_equal(n, want_n);
	if (n)
		assert_memory_equal(got, want, n * TLOG_HASH_SIZE);
	char expect[400];
	size_t expect_len = make_entry(index, expect, sizeof expect);
	assert_int_equal(entry_len, expect_len);
	assert_memory_equal(entry, expect, expect_len);
	free(got);
	free(entry);
}

static void expect_consistency(audit_log *log, const tlog_tree *ref, uint64_t old_size)
{
	uint8_t (*got)[AUDIT_HASH_LEN] = NULL;
	size_t n = 0;
	uint64_t size = 0;
	assert_int_equal(audit_consistency_proof(log, old_size, &size, &got, &n), KMS_OK);
	uint8_t want[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE];
	size_t want_n = 0;
	assert_int_equal(tlog_consistency_proof(tlog_tree_reader, (void *)ref, old_size, size, want,
	                                        &want_n), KMS_OK);
	assert_int_equal(n, want_n);
	if (n)
		assert_memory_equal(got, want, n * TLOG_HASH_SIZE);
	free(got);
}

static void save_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void expect_verify(const char *public_dir, const char *vkey, const char *since,
                          uint64_t size)
{
	const char *bin = getenv("KMS_TEST_KMS_ADMIN");
	assert_non_null(bin);
	const char *args[] = { "audit", "verify", public_dir, "--key", vkey, "--since", since, NULL };
	run_bin_options o = { .merge_stderr = true, .wait_ms = CLI_WAIT_MS };
	run_bin_result r = run_bin(bin, args, &o);
	char want[32];
	snprintf(want, sizeof want, "%llu", (unsigned long long)size);
	if (r.code != 0 || !strstr(r.out, want))
		fail_msg("kms-admin audit verify: exit %d, want 0 and \"%s\":\n%s", r.code, want, r.out);
	free(r.out);
	free(r.err);
}

static void restarts_keep_proofs(void **state)
{
	(void)state;
	char dir[700], pub[800], first_cp[800];
	log_dir("restarts", dir);
	snprintf(pub, sizeof pub, "%s/public", dir);
	snprintf(first_cp, sizeof first_cp, "%s/first-checkpoint", test_env_get().token_dir);
	tlog_tree ref;
	tlog_tree_init(&ref);
	uint64_t sizes[RESTARTS + 1];
	char vkey[AUDIT_VERIFIER_KEY_MAX];

	for (unsigned r = 0; r < RESTARTS; r++) {
		audit_log *log = open_log(dir, false);
		uint64_t size = tlog_tree_size(&ref);
		audit_stats s;
		audit_get_stats(log, &s);
		assert_int_equal(audit_size(log), size);
		/* Closed cleanly: everything was published; start-up read only
		 * the records past the last whole tile. */
		assert_int_equal(s.resumed_at, audit_floor_tile(size));
		assert_int_equal(s.open_scanned, size - audit_floor_tile(size));
		expect_scrub_clean(log);

		char *note = NULL;
		uint64_t cp_size = 0;
		uint8_t root[AUDIT_HASH_LEN], want[AUDIT_HASH_LEN];
		assert_int_equal(audit_checkpoint(log, &note, &cp_size, root), KMS_OK);
		assert_int_equal(cp_size, size);
		assert_int_equal(tlog_tree_root(&ref, size, want), KMS_OK);
		assert_memory_equal(root, want, AUDIT_HASH_LEN);
		if (r == 1)
			save_file(first_cp, note);
		free(note);
		audit_verifier_key(log, vkey);

		if (size > 0) {
			uint64_t picks[] = { 0, size / 3, size / 2, size - 1, 255, 256, 511 };
			for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++) {
				if (picks[i] >= size)
					continue;
				expect_inclusion(log, &ref, picks[i], 0);
				for (unsigned older = 0; older < r; older++)
					if (sizes[older] > picks[i])
						expect_inclusion(log, &ref, picks[i], sizes[older]);
			}
			for (unsigned older = 0; older < r; older++)
				expect_consistency(log, &ref, sizes[older]);
		}
		sizes[r] = size;
		/* 97, 158, ... and every fifth restart an exact tile's worth. */
		uint64_t add = r % 5 == 4 ? 256 : 97 + 61 * (uint64_t)r;
		append_n(log, &ref, size, add);
		audit_close(log);
	}
	audit_log *log = open_log(dir, false);
	assert_int_equal(audit_size(log), tlog_tree_size(&ref));
	expect_scrub_clean(log);
	audit_close(log);
	expect_verify(pub, vkey, first_cp, tlog_tree_size(&ref));
	tlog_tree_free(&ref);
}

static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	assert_non_null(f);
	unsigned long long total = 0, resident = 0;
	assert_int_equal(fscanf(f, "%llu %llu", &total, &resident), 2);
	fclose(f);
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void expect_bounded(audit_log *log)
{
	audit_stats s;
	audit_get_stats(log, &s);
	if (s.tree_bytes + s.cache_bytes > AUDIT_MEMORY_MAX || s.hot_entries > AUDIT_HOT_MAX)
		fail_msg("the audit tree holds %llu + %llu bytes (%llu hot entries) at %llu entries",
		         (unsigned long long)s.tree_bytes, (unsigned long long)s.cache_bytes,
		         (unsigned long long)s.hot_entries, (unsigned long long)audit_size(log));
}

static void memory_is_flat(void **state)
{
	(void)state;
	char dir[700];
	log_dir("flat", dir);
	audit_log *log = open_log(dir, false);
	uint64_t rss_warm = 0;
	for (uint64_t done = 0; done < FLAT_ENTRIES; done += FLAT_SAMPLE) {
		append_n(log, NULL, done, FLAT_SAMPLE);
		expect_bounded(log);
		if (done + FLAT_SAMPLE == FLAT_WARM)
			rss_warm = rss_bytes();
	}
	assert_int_equal(audit_size(log), FLAT_ENTRIES);
	uint64_t rss_end = rss_bytes();
	fprintf(stderr, "resident: %llu bytes at %u entries, %llu at %u\n",
	        (unsigned long long)rss_warm, FLAT_WARM, (unsigned long long)rss_end, FLAT_ENTRIES);
	/* Under AddressSanitizer freed memory waits in its quarantine (256 MB)
	 * and counts as resident: the module's own accounting above is the
	 * bound there. */
	if (!RSS_MEANINGFUL)
		fprintf(stderr, "resident memory not checked: AddressSanitizer's quarantine\n");
	else if (rss_end > rss_warm + RSS_GROWTH_MAX)
		fail_msg("resident memory grew %llu bytes from %u to %u entries",
		         (unsigned long long)(rss_end - rss_warm), FLAT_WARM, FLAT_ENTRIES);
	/* Old entries come back from the tiles and bundles on disk. */
	char *entry = NULL;
	size_t entry_len = 0, n = 0;
	uint8_t (*proof)[AUDIT_HASH_LEN] = NULL;
	uint64_t size = 0;
	assert_int_equal(audit_inclusion_proof(log, 12345, &size, &proof, &n, &entry, &entry_len),
	                 KMS_OK);
	char want[400];
	size_t want_len = make_entry(12345, want, sizeof want);
	assert_int_equal(entry_len, want_len);
	assert_memory_equal(entry, want, want_len);
	free(entry);
	free(proof);
	expect_bounded(log);
	audit_close(log);
}

static void start_up_reads_the_tail(void **state)
{
	(void)state;
	char dir[700], logbin[800];
	log_dir("flat", dir);
	snprintf(logbin, sizeof logbin, "%s/log.bin", dir);
	/* Acknowledged but never published: records appended behind the
	 * closed log's back, as a crash before the next checkpoint leaves them. */
	int fd = open(logbin, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	for (uint64_t i = FLAT_ENTRIES; i < FLAT_ENTRIES + TAIL_RECORDS; i++) {
		char entry[400];
		uint8_t record[400 + TLOG_RECORD_OVERHEAD];
		size_t len = make_entry(i, entry, sizeof entry);
		size_t put = tlog_record_put(record, sizeof record, (const uint8_t *)entry, len);
		assert_true(put > 0);
		assert_int_equal(write(fd, record, put), (ssize_t)put);
	}
	assert_int_equal(close(fd), 0);

	audit_log *log = open_log(dir, false);
	audit_stats s;
	audit_get_stats(log, &s);
	assert_int_equal(audit_size(log), FLAT_ENTRIES + TAIL_RECORDS);
	fprintf(stderr, "start-up read %llu records of %u, resumed at %llu\n",
	        (unsigned long long)s.open_scanned, FLAT_ENTRIES + TAIL_RECORDS,
	        (unsigned long long)s.resumed_at);
	assert_int_equal(s.resumed_at, audit_floor_tile(FLAT_ENTRIES));
	assert_true(s.open_scanned <= TAIL_RECORDS + (FLAT_ENTRIES - audit_floor_tile(FLAT_ENTRIES)));
	expect_scrub_clean(log);
	expect_bounded(log);
	audit_close(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(restarts_keep_proofs),
		cmocka_unit_test(memory_is_flat),
		cmocka_unit_test(start_up_reads_the_tail),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
