/*
 * test_audit_publish: the audit log in process on a real SoftHSM token.
 *
 * - never_signs_a_smaller_checkpoint: the publisher compares each
 *   checkpoint with the largest one signed before it signs. kmsd's
 *   recovery never lets the tree fall below it, so this reaches into the
 *   log (audit_internal.h) to stand for a checkpoint of a larger size, or
 *   another root at the same size, having been signed: audit_publish
 *   refuses, and public/checkpoint keeps its bytes.
 * - signed_size_survives_a_restart: reopened, the log reads its floor back
 *   from public/checkpoint.
 * - refuses_a_foreign_checkpoint: a public/checkpoint this HSM's key did
 *   not sign stops audit_open.
 * - one_writer_at_a_time: a second audit_open on the same directory fails
 *   on the lock.
 */
#include "tests/support/hsm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/tlog/tlog_merkle.h"
#include "kms/audit/audit.h"
#include "kms/audit/audit_internal.h"

#define ORIGIN "kms.test/audit"
#define ENTRIES 10

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

static audit_log *open_log(const char *dir)
{
	audit_config cfg = { .dir = dir, .origin = ORIGIN, .hsm = g_hsm, .checkpoint_ms = 60000,
		             .sync = true };
	audit_log *log = NULL;
	if (audit_open(&cfg, &log) != KMS_OK)
		fail_msg("audit_open(%s): %s", dir, kms_error_message());
	return log;
}

static void append_entries(audit_log *log, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char entry[64];
		int len = snprintf(entry, sizeof entry, "{\"request_id\":\"publish-%u\"}", i);
		assert_int_equal(audit_append(log, entry, (size_t)len), KMS_OK);
	}
}

static char *read_checkpoint(const char *dir)
{
	char path[800];
	snprintf(path, sizeof path, "%s/public/checkpoint", dir);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *text = calloc(1, 8192);
	assert_non_null(text);
	size_t n = fread(text, 1, 8191, f);
	fclose(f);
	assert_true(n > 0);
	return text;
}

static void never_signs_a_smaller_checkpoint(void **state)
{
	(void)state;
	char dir[700];
	log_dir("smaller", dir);
	audit_log *log = open_log(dir);
	append_entries(log, ENTRIES);
	assert_int_equal(audit_publish(log), KMS_OK);
	char *before = read_checkpoint(dir);
	assert_int_equal(log->signed_size, audit_size(log));

	/* As if a checkpoint of a larger size had been signed. */
	uint64_t real_size = log->signed_size;
	log->signed_size = real_size + 5;
	assert_int_equal(audit_publish(log), KMS_FAILED_PRECONDITION);
	test_assert_message("refused to sign a checkpoint of size", "below the signed size", NULL);
	char *after = read_checkpoint(dir);
	assert_string_equal(after, before);
	free(after);

	/* Another root at the signed size. */
	log->signed_size = real_size;
	log->signed_root[0] ^= 0x01;
	assert_int_equal(audit_publish(log), KMS_FAILED_PRECONDITION);
	after = read_checkpoint(dir);
	assert_string_equal(after, before);
	free(after);

	log->signed_root[0] ^= 0x01;
	assert_int_equal(audit_publish(log), KMS_OK);
	audit_close(log);
	free(before);
}

static void signed_size_survives_a_restart(void **state)
{
	(void)state;
	char dir[700];
	log_dir("restart", dir);
	audit_log *log = open_log(dir);
	append_entries(log, ENTRIES);
	audit_close(log); /* publishes the final checkpoint */
	log = open_log(dir);
	assert_int_equal(log->signed_size, ENTRIES);
	uint8_t root[AUDIT_HASH_LEN];
	char *note;
	uint64_t size;
	assert_int_equal(audit_checkpoint(log, &note, &size, root), KMS_OK);
	assert_int_equal(size, ENTRIES);
	assert_memory_equal(root, log->signed_root, AUDIT_HASH_LEN);
	free(note);
	audit_close(log);
}

static void refuses_a_foreign_checkpoint(void **state)
{
	(void)state;
	char dir[700], pub[750], path[800];
	log_dir("foreign", dir);
	snprintf(pub, sizeof pub, "%s/public", dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mkdir(pub, 0755), 0);
	snprintf(path, sizeof path, "%s/checkpoint", pub);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	/* Go's test note, signed by another key. */
	fputs("kms.test/audit\n5\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n"
	      "\xe2\x80\x94 kms.test/audit 0/JWZ0cCo0Iamab/FqjACE/uLPkI3COquh+pyLBBAd28qM+E2mqKN2j5fN"
	      "ViK4umT+aJKS7RckQ7z4vfDgXRZBH+TgA=\n", f);
	assert_int_equal(fclose(f), 0);
	audit_config cfg = { .dir = dir, .origin = ORIGIN, .hsm = g_hsm, .checkpoint_ms = 60000,
		             .sync = true };
	audit_log *log = NULL;
	assert_int_equal(audit_open(&cfg, &log), KMS_FAILED_PRECONDITION);
	assert_null(log);
	test_assert_message("public/checkpoint", "restore public/ from a mirror", NULL);
}

static void one_writer_at_a_time(void **state)
{
	(void)state;
	char dir[700];
	log_dir("lock", dir);
	audit_log *first = open_log(dir);
	audit_config cfg = { .dir = dir, .origin = ORIGIN, .hsm = g_hsm, .checkpoint_ms = 60000,
		             .sync = true };
	audit_log *second = NULL;
	assert_int_equal(audit_open(&cfg, &second), KMS_FAILED_PRECONDITION);
	assert_null(second);
	test_assert_message("log.bin is in use by another process", NULL);
	audit_close(first);
	second = open_log(dir);
	audit_close(second);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(never_signs_a_smaller_checkpoint),
		cmocka_unit_test(signed_size_survives_a_restart),
		cmocka_unit_test(refuses_a_foreign_checkpoint),
		cmocka_unit_test(one_writer_at_a_time),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
