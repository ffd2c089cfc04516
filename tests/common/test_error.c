/*
 * test_error: kms_error_strip_paths, which cuts filesystem paths out of the
 * lines a client or the audit log gets, in the shapes kmsd's failures take
 * (the store, the audit log, the HSM module, an ipc:// URL), and leaves ids
 * and network addresses alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "common/error.h"

static void expect_cut(const char *in, const char *want, bool cut)
{
	char msg[KMS_ERROR_MAX];
	snprintf(msg, sizeof msg, "%s", in);
	assert_int_equal(kms_error_strip_paths(msg), cut);
	assert_string_equal(msg, want);
}

static void paths_become_file_names(void **state)
{
	(void)state;
	expect_cut("store: open /var/lib/kms/kms.db: unable to open database file",
	           "store: open kms.db: unable to open database file", true);
	expect_cut("audit log cannot be written (write /var/lib/kms/audit/log.bin: No space "
	           "left on device): request r-1 refused; free the disk and retry",
	           "audit log cannot be written (write log.bin: No space left on device): "
	           "request r-1 refused; free the disk and retry", true);
	expect_cut("hsm: C_GetSlotList in /usr/lib/softhsm/libsofthsm2.so -> CKR_GENERAL_ERROR",
	           "hsm: C_GetSlotList in libsofthsm2.so -> CKR_GENERAL_ERROR", true);
	expect_cut("audit: cannot create /srv/kms/audit/public/: EROFS",
	           "audit: cannot create public/: EROFS", true);
	expect_cut("file=/etc/kms/server.key,", "file=server.key,", true);
	/* An ipc:// URL's path, as /healthz's ipc probe names the socket. */
	expect_cut("ipc:///run/kms/kms.sock does not answer: connect: No such file or directory",
	           "ipc://kms.sock does not answer: connect: No such file or directory", true);
}

static void ids_and_aliases_stay(void **state)
{
	(void)state;
	const char *kept[] = {
		"key alias/payments/eu not found",
		"key k-0123456789abcdef0123456789abcdef version 3 is disabled",
		"origin kms.example.in/audit/in-mum",
		"tls+tcp://127.0.0.1:7443 does not answer",
		"http://127.0.0.1:7480/healthz",
		"",
	};
	for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
		expect_cut(kept[i], kept[i], false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(paths_become_file_names),
		cmocka_unit_test(ids_and_aliases_stay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
