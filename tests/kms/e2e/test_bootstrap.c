/*
 * test_bootstrap: the real `kmsd --bootstrap-admin` on a fresh data dir and
 * a fresh token (docs/authorization.md, "The first principal"):
 *
 *  - a credentials temp file (FILE.tmp) left by an interrupted earlier run
 *    is refused with one line that names it, says where it came from and
 *    says to remove it; nothing is made (no file, no principal);
 *  - once it is removed, the bootstrap makes the file (mode 0600, no temp
 *    file left), the principal and its access key (both in the store), and
 *    says once, in one wording, that it created the access key secret
 *    wrapping key on the token, in the words kmsd's own start uses
 *    (kmsd-check-test checks those).
 * (test_store_authz checks the store write is one transaction; test_signing
 * the refusals on a store with principals and with kmsd running.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kms/store/store.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define WRAP_LINE "created the access key secret wrapping key on token"

static char dir[512], config[700], data[700], out_path[700], tmp_path[800];

static void write_config(void)
{
	const char *label = getenv("KMS_TEST_TOKEN_LABEL");
	const char *pin = getenv("KMS_TEST_PIN_FILE");
	const char *module = getenv("KMS_TEST_MODULE");
	assert_non_null(label);
	assert_non_null(pin);
	FILE *f = fopen(config, "w");
	assert_non_null(f);
	fprintf(f, "[kmsd]\nregion = in-mum\ndata_dir = %s\nworkers = 2\n\n"
	           "[listen]\nurl = ipc://%s/boot.sock\n\n"
	           "[hsm]\nmodule = %s\ntoken_label = %s\npin_file = %s\n\n"
	           "[ipc_principals]\n%u = boot-admin\n",
	        data, dir, module ? module : "/usr/lib/softhsm/libsofthsm2.so", label, pin,
	        (unsigned)getuid());
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	(void)state;
	const char *d = getenv("KMS_TEST_TOKEN_DIR");
	if (!d || !getenv("KMS_TEST_KMSD"))
		return -1;
	snprintf(dir, sizeof dir, "%s", d);
	snprintf(config, sizeof config, "%s/boot.ini", dir);
	snprintf(data, sizeof data, "%s/boot-data", dir);
	snprintf(out_path, sizeof out_path, "%s/boot.credentials", dir);
	snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path);
	write_config();
	return 0;
}

/* kmsd with args; under ASan with the unwinding the suppressions need
 * (as tests/support/harness.c starts kmsd). */
static run_bin_result kmsd(const char *const *args)
{
	static char asan[1024];
	const char *have = getenv("ASAN_OPTIONS");
	const char *env[2] = { NULL, NULL };
	if (have && !strstr(have, "fast_unwind_on_malloc")) {
		snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%sfast_unwind_on_malloc=0", have,
		         have[0] ? ":" : "");
		env[0] = asan;
	}
	run_bin_options o = { .env = env, .wait_ms = 60000 };
	return run_bin(getenv("KMS_TEST_KMSD"), args, &o);
}

static run_bin_result bootstrap(void)
{
	const char *args[] = { "-c", config, "--bootstrap-admin", "boot-admin",
	                       "--credentials-out", out_path, NULL };
	return kmsd(args);
}

static unsigned count(const char *haystack, const char *needle)
{
	unsigned n = 0;
	for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static bool store_has_principals(void)
{
	store *st = NULL;
	bool created = false, any = true;
	assert_int_equal(store_open(data, &st, &created), KMS_OK);
	assert_int_equal(store_principals_any(st, &any), KMS_OK);
	store_close(st);
	return any;
}

static void stale_temp_file_then_bootstrap(void **state)
{
	(void)state;
	/* What an earlier run killed between creating and removing it leaves. */
	FILE *f = fopen(tmp_path, "w");
	assert_non_null(f);
	fputs("partial\n", f);
	assert_int_equal(fclose(f), 0);

	run_bin_result r = bootstrap();
	printf("# FILE.tmp left: exit %d: %s", r.code, r.err);
	assert_int_equal(r.code, 1);
	char want[3000];
	snprintf(want, sizeof want, "--credentials-out: the temp file %s exists, left by an "
	         "interrupted earlier --bootstrap-admin: remove it and run again", tmp_path);
	assert_non_null(strstr(r.err, want));
	assert_int_equal(count(r.err, "\n"), 1); /* one line */
	assert_string_equal(r.out, "");
	run_bin_free(&r);
	assert_int_equal(access(out_path, F_OK), -1);
	assert_int_equal(access(tmp_path, F_OK), 0); /* the user's to remove */
	assert_false(store_has_principals());

	assert_int_equal(unlink(tmp_path), 0);
	r = bootstrap();
	printf("# FILE.tmp removed: exit %d: %s%s", r.code, r.out, r.err);
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.out, "principal boot-admin\naccess_key_id AK"));
	char label_line[200];
	snprintf(label_line, sizeof label_line, WRAP_LINE " \"%s\"",
	         getenv("KMS_TEST_TOKEN_LABEL"));
	assert_int_equal(count(r.err, "wrapping key"), 1); /* said once, in one wording */
	assert_non_null(strstr(r.err, label_line));
	char id[AUTHZ_ID_SIZE];
	const char *at = strstr(r.out, "access_key_id ");
	assert_non_null(at);
	snprintf(id, sizeof id, "%.*s", AUTHZ_ID_LEN, at + strlen("access_key_id "));
	run_bin_free(&r);

	struct stat sb;
	assert_int_equal(stat(out_path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(access(tmp_path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	char *text = harness_read_file(out_path, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, id));
	free(text);

	/* The principal and its access key, both in the store. */
	store *st = NULL;
	bool created = false;
	assert_int_equal(store_open(data, &st, &created), KMS_OK);
	store_principal p;
	store_access_key k;
	assert_int_equal(store_principal_get(st, "boot-admin", &p), KMS_OK);
	assert_int_equal(p.roles, PRINCIPAL_ROLE_ADMIN);
	assert_int_equal(store_access_key_get(st, id, &k), KMS_OK);
	assert_string_equal(k.principal, "boot-admin");
	assert_int_equal(k.state, ACCESS_KEY_STATE_ACTIVE);
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stale_temp_file_then_bootstrap),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
