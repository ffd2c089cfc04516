/*
 * test_audit_repair: the audit log's acknowledged history cannot be cut,
 * rolled back or mis-verified (docs/audit-log.md, "Recovery", "Repair",
 * "Copies"), against a real kmsd on a real SoftHSM token, real files
 * flipped on disk and the real kms-admin.
 *
 * (a) flipped_bytes_stop_kmsd: 2,000 entries through real requests, a
 *     clean stop, then one byte flipped at a time (inside an early
 *     record's entry, in a length field, in a leaf hash, in the last
 *     record): kmsd exits non-zero naming the record and its offset, the
 *     published checkpoint and tiles are untouched (no smaller checkpoint
 *     is ever signed), `kms-admin audit repair` restores log.bin byte for
 *     byte and `kms-admin audit verify` passes with every entry.
 * (b) stale_partials_are_verified: in a copy of that log, one byte of a
 *     stale partial hash tile (tile/0/000.p/W beside tile/0/000) and of a
 *     stale partial bundle: `audit verify` fails naming the file, with and
 *     without --since.
 * (c) unpublished_damage_and_torn_tail: past the published checkpoint, a
 *     damaged record (a flipped hash, then a flipped length field) with a
 *     whole one after it stops kmsd and repair says where to truncate; a
 *     half record appended (a torn write) is cut and kmsd starts.
 * (d) export_under_load: `kms-admin audit export` of the live directory
 *     while three clients write (bounded in count and time), and a copy
 *     taken checkpoint first with cp -r: both verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/tlog/tlog_records.h"
#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define FILL_ENTRIES 2000
#define PARTIAL_ENTRIES 16 /* signed into a checkpoint before the rest */
#define FILL_THREADS 4
#define CLI_WAIT_MS 60000
#define EXIT_WAIT_MS 30000
#define LOAD_REQUESTS_MAX 1500       /* per client */
#define LOAD_BUDGET_MS 20000
#define EXPORTS 5

static const char *const CONFIG = "[audit]\ncheckpoint_ms = 50\n";

static harness H;

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

static void start(void)
{
	harness_options o = { .extra_config = CONFIG };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
}

static void stop_clean(void)
{
	int code = harness_stop(&H);
	if (code != 0)
		fail_msg("kmsd exit code %d after SIGTERM; see %s", code, H.log);
}

static void paths(char audit[700], char pub[700], char logbin[800], char cp[800])
{
	audit_dir(&H, NULL, audit, 700);
	audit_public_dir(&H, NULL, pub, 700);
	snprintf(logbin, 800, "%s/log.bin", audit);
	snprintf(cp, 800, "%s/checkpoint", pub);
}

/* ---- requests ---- */

static bool health_on(nng_socket s, const char *id)
{
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = (char *)id;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = harness_call_on(&H, s, &req);
	bool ok = r && r->status == KMS__STATUS__OK;
	if (r)
		kms__response__free_unpacked(r, NULL);
	return ok;
}

typedef struct loader {
	unsigned index, count;
	atomic_bool *stop;
	uint64_t deadline_ms;
	unsigned done;
	bool failed;
} loader;

static void *load_main(void *arg)
{
	loader *l = arg;
	nng_socket s;
	if (!e2e_socket(&H, 2000, 10000, &s)) {
		l->failed = true;
		return NULL;
	}
	for (unsigned i = 0; i < l->count && e2e_now_ms() < l->deadline_ms; i++) {
		if (l->stop && atomic_load(l->stop))
			break;
		char id[48];
		snprintf(id, sizeof id, "load-%u-%u", l->index, i);
		if (!health_on(s, id)) {
			l->failed = true;
			break;
		}
		l->done++;
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

/* n entries through FILL_THREADS clients, every one answered OK. */
static void fill(unsigned n)
{
	loader l[FILL_THREADS];
	pthread_t t[FILL_THREADS];
	for (unsigned i = 0; i < FILL_THREADS; i++) {
		l[i] = (loader){ .index = i, .count = n / FILL_THREADS + (i < n % FILL_THREADS),
			         .deadline_ms = e2e_now_ms() + 120000 };
		assert_int_equal(pthread_create(&t[i], NULL, load_main, &l[i]), 0);
	}
	unsigned done = 0;
	for (unsigned i = 0; i < FILL_THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_false(l[i].failed);
		done += l[i].done;
	}
	assert_int_equal(done, n);
}

/* ---- kms-admin ---- */

/* Runs kms-admin with args (NULL-terminated), stdout and stderr together in
 * *out (malloc'ed); returns its exit code. Bounded: killed after CLI_WAIT_MS. */
static int admin(char **out, const char *const *args)
{
	const char *bin = getenv("KMS_TEST_KMS_ADMIN");
	assert_non_null(bin);
	run_bin_options o = { .merge_stderr = true, .wait_ms = CLI_WAIT_MS };
	run_bin_result r = run_bin(bin, args, &o);
	*out = r.out;
	free(r.err);
	return r.code;
}

static void expect_admin(int code, const char *needle, const char *const *args)
{
	char *out;
	int got = admin(&out, args);
	if (got != code || (needle && !strstr(out, needle)))
		fail_msg("kms-admin audit %s: exit %d (want %d), output does not say \"%s\":\n%s",
		         args[1], got, code, needle ? needle : "", out);
	free(out);
}

static void verify_cli(const char *dir, const char *vkey, uint64_t size, const char *since)
{
	char want[64];
	snprintf(want, sizeof want, "%llu", (unsigned long long)size);
	if (since)
		expect_admin(0, want, (const char *const[]){ "audit", "verify", dir, "--key", vkey,
		                                             "--since", since, NULL });
	else
		expect_admin(0, want, (const char *const[]){ "audit", "verify", dir, "--key", vkey,
		                                             NULL });
}

/* ---- log.bin ---- */

typedef struct record_map {
	uint64_t *offsets;
	uint16_t *lens;
	uint64_t n, cap;
} record_map;

static kms_status map_visit(void *ctx, uint64_t index, uint64_t offset, const uint8_t *entry,
                            size_t len, const uint8_t hash[static TLOG_HASH_SIZE])
{
	(void)index;
	(void)entry;
	(void)hash;
	record_map *m = ctx;
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 1024;
		m->offsets = realloc(m->offsets, m->cap * sizeof *m->offsets);
		m->lens = realloc(m->lens, m->cap * sizeof *m->lens);
		if (!m->offsets || !m->lens)
			abort();
	}
	m->offsets[m->n] = offset;
	m->lens[m->n++] = (uint16_t)len;
	return KMS_OK;
}

static void flip_byte(const char *path, uint64_t offset)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)offset), 1);
	b ^= 0x01;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)offset), 1);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void append_file(const char *path, const void *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

/* kmsd must refuse to start and say needle. */
static void expect_refusal(const char *needle)
{
	size_t log_at = e2e_log_size(&H);
	harness_options o = { .extra_config = CONFIG };
	assert_true(harness_spawn(&H, &o));
	int code;
	if (!e2e_wait_exit(&H, EXIT_WAIT_MS, &code))
		fail_msg("kmsd kept running on a damaged log.bin (wanted \"%s\"); see %s", needle,
		         H.log);
	if (code == 0 || !e2e_log_contains_since(&H, log_at, needle))
		fail_msg("kmsd exit %d, its log does not say \"%s\"; see %s", code, needle, H.log);
}

/* ---- (a) ---- */

static char g_vkey[AUDIT_VKEY_MAX];
static char *g_checkpoint; /* after (a) */
static uint64_t g_size;

static void flipped_bytes_stop_kmsd(void **state)
{
	(void)state;
	char audit[700], pub[700], logbin[800], cp_path[800];
	start();
	/* A checkpoint while the first tiles are partial, waited for: (b)
	 * needs their stale partials, and 2,000 requests can fill the first
	 * 256 entries faster than checkpoint_ms publishes one. */
	audit_cp cp;
	fill(PARTIAL_ENTRIES);
	audit_wait_checkpoint(&H, PARTIAL_ENTRIES, 30000, &cp);
	assert_true(cp.size < 256);
	audit_cp_free(&cp);
	fill(FILL_ENTRIES - PARTIAL_ENTRIES);
	audit_get_checkpoint(&H, &cp);
	snprintf(g_vkey, sizeof g_vkey, "%s", cp.vkey);
	audit_cp_free(&cp);
	stop_clean();
	paths(audit, pub, logbin, cp_path);

	size_t good_len, cp_len;
	char *good = harness_read_file(logbin, &good_len);
	char *published = harness_read_file(cp_path, &cp_len);
	assert_non_null(good);
	assert_non_null(published);
	record_map m = { 0 };
	tlog_records_scan scan;
	assert_int_equal(tlog_records_scan_bytes((const uint8_t *)good, good_len, map_visit, &m,
	                                         &scan), KMS_OK);
	assert_int_equal(scan.fault, TLOG_RECORD_WHOLE);
	assert_true(m.n >= FILL_ENTRIES);
	verify_cli(pub, g_vkey, m.n, NULL); /* everything was published at the stop */

	struct {
		const char *what;
		uint64_t record, offset;
	} cases[] = {
		{ "an early record's entry", 3, m.offsets[3] + 2 + 5 },
		{ "a length field", 1000, m.offsets[1000] + 1 },
		{ "a leaf hash", 1500, m.offsets[1500] + 2 + m.lens[1500] + 7 },
		{ "the last record", m.n - 1, m.offsets[m.n - 1] + 2 + 3 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		fprintf(stderr, "flip a byte in %s (record %llu, byte %llu)\n", cases[i].what,
		        (unsigned long long)cases[i].record, (unsigned long long)cases[i].offset);
		flip_byte(logbin, cases[i].offset);
		char said[128];
		snprintf(said, sizeof said, "log.bin record %llu at offset %llu is damaged",
		         (unsigned long long)cases[i].record,
		         (unsigned long long)m.offsets[cases[i].record]);
		expect_refusal(said);
		/* Nothing was cut, nothing signed: the checkpoint and tiles stay. */
		size_t now_len;
		char *now = harness_read_file(cp_path, &now_len);
		assert_non_null(now);
		assert_int_equal(now_len, cp_len);
		assert_memory_equal(now, published, cp_len);
		free(now);
		verify_cli(pub, g_vkey, m.n, NULL);
		size_t damaged_len;
		free(harness_read_file(logbin, &damaged_len));
		assert_int_equal(damaged_len, good_len);

		char rewritten[64];
		snprintf(rewritten, sizeof rewritten, "record %llu at offset %llu",
		         (unsigned long long)cases[i].record,
		         (unsigned long long)m.offsets[cases[i].record]);
		expect_admin(0, rewritten, (const char *const[]){ "audit", "repair", audit, "--key",
		                                                  g_vkey, NULL });
		size_t fixed_len;
		char *fixed = harness_read_file(logbin, &fixed_len);
		assert_int_equal(fixed_len, good_len);
		assert_memory_equal(fixed, good, good_len);
		free(fixed);
		verify_cli(pub, g_vkey, m.n, NULL);
		/* Run again: nothing to repair. */
		expect_admin(0, "nothing to repair", (const char *const[]){ "audit", "repair", audit,
		                                                            "--key", g_vkey, NULL });
	}
	/* While kmsd runs, repair refuses: the same lock. */
	start();
	expect_admin(2, "stop kmsd first", (const char *const[]){ "audit", "repair", audit, "--key",
	                                                         g_vkey, NULL });
	stop_clean();
	audit_entries e;
	audit_load(pub, g_vkey, published, &e);
	assert_true(e.n > m.n);
	g_size = e.n;
	audit_entries_free(&e);
	g_checkpoint = harness_read_file(cp_path, NULL);
	free(published);
	free(good);
	free(m.offsets);
	free(m.lens);
}

/* ---- (b) ---- */

/* The widest stale partial in dir/<sub>.p, written as <sub>.p/<W>. */
static bool widest_partial(const char *pub, const char *sub, char out[128])
{
	char path[900];
	snprintf(path, sizeof path, "%s/%s.p", pub, sub);
	DIR *d = opendir(path);
	if (!d)
		return false;
	unsigned best = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		unsigned w = (unsigned)strtoul(e->d_name, NULL, 10);
		if (e->d_name[0] != '.' && w > best)
			best = w;
	}
	closedir(d);
	snprintf(out, 128, "%s.p/%u", sub, best);
	return best > 0;
}

static void copy_tree(const char *from, const char *to)
{
	char cmd[2000];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", to, from, to);
	assert_int_equal(system(cmd), 0);
}

static void corrupt_and_verify(const char *pub, const char *file, uint64_t at_from_end)
{
	char copy[700], target[900], cp_file[900];
	snprintf(copy, sizeof copy, "%s/stale-copy", H.dir);
	copy_tree(pub, copy);
	snprintf(target, sizeof target, "%s/%s", copy, file);
	struct stat sb;
	assert_int_equal(stat(target, &sb), 0);
	flip_byte(target, (uint64_t)sb.st_size - at_from_end);
	snprintf(cp_file, sizeof cp_file, "%s/checkpoint", pub);
	fprintf(stderr, "corrupt %s\n", file);
	expect_admin(1, file, (const char *const[]){ "audit", "verify", copy, "--key", g_vkey,
	                                             NULL });
	expect_admin(1, file, (const char *const[]){ "audit", "verify", copy, "--key", g_vkey,
	                                             "--since", cp_file, NULL });
}

static void stale_partials_are_verified(void **state)
{
	(void)state;
	assert_non_null(g_checkpoint);
	char audit[700], pub[700], logbin[800], cp_path[800], tile[128], bundle[128];
	paths(audit, pub, logbin, cp_path);
	assert_true(widest_partial(pub, "tile/0/000", tile));
	assert_true(widest_partial(pub, "tile/entries/000", bundle));
	/* They are stale: the full ones exist. */
	char full[900];
	snprintf(full, sizeof full, "%s/tile/0/000", pub);
	assert_int_equal(access(full, F_OK), 0);
	verify_cli(pub, g_vkey, g_size, NULL);
	corrupt_and_verify(pub, tile, 5);           /* inside the last hash */
	corrupt_and_verify(pub, bundle, 3);         /* inside the last entry */
}

/* ---- (c) ---- */

static void unpublished_damage_and_torn_tail(void **state)
{
	(void)state;
	assert_non_null(g_checkpoint);
	char audit[700], pub[700], logbin[800], cp_path[800];
	paths(audit, pub, logbin, cp_path);
	struct stat sb;
	assert_int_equal(stat(logbin, &sb), 0);
	uint64_t end = (uint64_t)sb.st_size;

	/* Two records past the checkpoint, the first with a wrong hash. */
	static const char first[] = "{\"request_id\":\"unpublished-1\",\"status\":\"OK\"}";
	static const char second[] = "{\"request_id\":\"unpublished-2\",\"status\":\"OK\"}";
	uint8_t two[2 * (TLOG_RECORD_OVERHEAD + 64)];
	size_t a = tlog_record_put(two, sizeof two, (const uint8_t *)first, sizeof first - 1);
	size_t b = tlog_record_put(two + a, sizeof two - a, (const uint8_t *)second,
	                           sizeof second - 1);
	assert_true(a > 0 && b > 0);
	two[a - 1] ^= 0x80;
	append_file(logbin, two, a + b);
	char said[128];
	snprintf(said, sizeof said, "log.bin record %llu at offset %llu is damaged",
	         (unsigned long long)g_size, (unsigned long long)end);
	expect_refusal(said);
	expect_refusal("with 1 whole records after it");
	char truncate_to[64];
	snprintf(truncate_to, sizeof truncate_to, "truncate the file to %llu bytes",
	         (unsigned long long)end);
	expect_admin(1, truncate_to, (const char *const[]){ "audit", "repair", audit, "--key",
	                                                    g_vkey, NULL });
	/* The documented way to drop them, knowingly. */
	assert_int_equal(truncate(logbin, (off_t)end), 0);

	/* The same two records, whole, then the first one's length field
	 * flipped: nothing lines up after it at its length, yet the second
	 * record is still whole to the end of the file. */
	two[a - 1] ^= 0x80;
	two[1] ^= 0x01;
	append_file(logbin, two, a + b);
	expect_refusal(said);
	expect_refusal("with 1 whole records after it");
	expect_admin(1, truncate_to, (const char *const[]){ "audit", "repair", audit, "--key",
	                                                    g_vkey, NULL });
	assert_int_equal(truncate(logbin, (off_t)end), 0);

	/* A torn write: half a record. It is cut, and kmsd starts. */
	uint8_t half[TLOG_RECORD_OVERHEAD + 64];
	size_t n = tlog_record_put(half, sizeof half, (const uint8_t *)first, sizeof first - 1);
	append_file(logbin, half, n / 2);
	size_t log_at = e2e_log_size(&H);
	start();
	assert_true(e2e_log_contains_since(&H, log_at, "audit: cut a torn record"));
	stop_clean();
	audit_entries e;
	audit_load(pub, g_vkey, g_checkpoint, &e);
	assert_true(e.n > g_size);
	audit_entries_free(&e);
}

/* ---- (d) ---- */

static void export_under_load(void **state)
{
	(void)state;
	assert_non_null(g_checkpoint);
	char audit[700], pub[700], logbin[800], cp_path[800];
	paths(audit, pub, logbin, cp_path);
	start();
	atomic_bool stop = false;
	loader l[3];
	pthread_t t[3];
	for (unsigned i = 0; i < 3; i++) {
		l[i] = (loader){ .index = 10 + i, .count = LOAD_REQUESTS_MAX, .stop = &stop,
			         .deadline_ms = e2e_now_ms() + LOAD_BUDGET_MS };
		assert_int_equal(pthread_create(&t[i], NULL, load_main, &l[i]), 0);
	}
	char dst[700], again[700], raw[700];
	snprintf(again, sizeof again, "%s/export-again", H.dir);
	for (unsigned i = 0; i < EXPORTS; i++) {
		snprintf(dst, sizeof dst, "%s/export-%u", H.dir, i);
		expect_admin(0, "exported", (const char *const[]){ "audit", "export", pub, dst,
		                                                   "--key", g_vkey, NULL });
		/* The same DST brought up to date, under load. */
		expect_admin(0, "exported", (const char *const[]){ "audit", "export", pub, again,
		                                                   "--key", g_vkey, NULL });
	}
	/* checkpoint first, then the rest with cp -r, as docs/audit-log.md
	 * says: cp may complain of a temporary file that vanished. */
	snprintf(raw, sizeof raw, "%s/raw-copy", H.dir);
	char cmd[4600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s/checkpoint' '%s/' && "
	         "{ cp -r '%s/tile' '%s/' 2>/dev/null || true; }", raw, raw, pub, raw, pub, raw);
	assert_int_equal(system(cmd), 0);
	atomic_store(&stop, true);
	unsigned done = 0;
	for (unsigned i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_false(l[i].failed);
		done += l[i].done;
	}
	fprintf(stderr, "export_under_load: %u requests during %u exports\n", done, 2 * EXPORTS);
	assert_true(done > 0);
	stop_clean();
	/* Each copy extends the checkpoint (a) ended with. */
	char since[700];
	snprintf(since, sizeof since, "%s/since-checkpoint", H.dir);
	FILE *f = fopen(since, "w");
	assert_non_null(f);
	assert_int_equal(fputs(g_checkpoint, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	for (unsigned i = 0; i < EXPORTS; i++) {
		snprintf(dst, sizeof dst, "%s/export-%u", H.dir, i);
		expect_admin(0, "verified", (const char *const[]){ "audit", "verify", dst, "--key",
		                                                   g_vkey, "--since", since, NULL });
	}
	expect_admin(0, "verified", (const char *const[]){ "audit", "verify", raw, "--key", g_vkey,
	                                                   NULL });
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(flipped_bytes_stop_kmsd, teardown),
		cmocka_unit_test_teardown(stale_partials_are_verified, teardown),
		cmocka_unit_test_teardown(unpublished_damage_and_torn_tail, teardown),
		cmocka_unit_test_teardown(export_under_load, teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	free(g_checkpoint);
	return failed;
}
