/*
 * The real kms-admin and kms against an ipc:// endpoint with no kmsd: a
 * path with no socket file, and a socket file left by a stopped kmsd (bound,
 * nobody listening: connect(2) is refused). Each used to wait out the whole
 * --timeout and say "no answer ... is kmsd running?"; now each exits 3 at
 * once with one line naming the path and what was found there. Given
 * --timeout 10000, the run must end well before it (2 s is the bound
 * asserted: the point is not waiting 10 s, not a tight figure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/support/run_bin.h"

#define CALL_TIMEOUT "10000" /* what kms-admin is told to wait, at most */
#define FAST_MS 2000         /* it must be done well before that */
#define CLI_WAIT_MS 20000    /* our own bound on the process */

static char g_dir[64];
static char g_stale[128];   /* a socket file nobody listens on */
static char g_missing[128]; /* a path with nothing at it */

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/kms-ipc-down-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	snprintf(g_stale, sizeof g_stale, "%s/kms.sock", g_dir);
	snprintf(g_missing, sizeof g_missing, "%s/none/kms.sock", g_dir);
	/* What a kmsd killed with SIGKILL leaves: the socket file, no listener. */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(g_stale) >= sizeof sa.sun_path)
		return -1;
	memcpy(sa.sun_path, g_stale, strlen(g_stale) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(g_stale);
	rmdir(g_dir);
	return 0;
}

/* Runs BIN ARGS (env KMS_TEST_<WHICH>), stdout and stderr together in out,
 * bounded by CLI_WAIT_MS: the exit code, the output and how long it took. */
static run_bin_result run(const char *which, const char *const *args)
{
	const char *bin = getenv(which);
	assert_non_null(bin);
	run_bin_options o = { .merge_stderr = true, .wait_ms = CLI_WAIT_MS };
	return run_bin(bin, args, &o);
}

/* Exit 3, one line holding want, well before the timeout. */
static void expect_down(const char *which, const char *const *args, const char *want)
{
	run_bin_result r = run(which, args);
	const char *out = r.out;
	uint64_t took = r.ms;
	int code = r.code;
	printf("# %s: exit %d after %llu ms: %s", which, code, (unsigned long long)took, out);
	assert_int_equal(code, 3);
	if (!strstr(out, want))
		fail_msg("output does not say \"%s\": %s", want, out);
	const char *nl = strchr(out, '\n');
	if (!nl || nl[1] != '\0')
		fail_msg("not one line: %s", out);
	if (took >= FAST_MS)
		fail_msg("took %llu ms with --timeout %s: it waited for a kmsd that is not there",
		         (unsigned long long)took, CALL_TIMEOUT);
	run_bin_free(&r);
}

static void no_socket_file(void **state)
{
	(void)state;
	const char *args[] = { "health", "--endpoint", "ipc:///nonexistent/kms.sock",
	                       "--timeout", CALL_TIMEOUT, NULL };
	expect_down("KMS_TEST_KMS_ADMIN", args,
	            "no socket at /nonexistent/kms.sock: is kmsd running?");
}

static void stale_socket_file(void **state)
{
	(void)state;
	char url[160], want[200];
	snprintf(url, sizeof url, "ipc://%s", g_stale);
	snprintf(want, sizeof want, "kmsd is not running at %s (connection refused", g_stale);
	const char *args[] = { "health", "--endpoint", url, "--timeout", CALL_TIMEOUT, NULL };
	expect_down("KMS_TEST_KMS_ADMIN", args, want);
	/* kms too: the same library. */
	const char *kms_args[] = { "random", "16", "--endpoint", url, "--timeout", CALL_TIMEOUT,
	                           NULL };
	expect_down("KMS_TEST_KMS", kms_args, want);
}

/* With several endpoints each is tried; the call fails at once only when
 * none is up, naming the first. */
static void every_endpoint_down(void **state)
{
	(void)state;
	char stale[160], missing[160], want[300];
	snprintf(stale, sizeof stale, "ipc://%s", g_stale);
	snprintf(missing, sizeof missing, "ipc://%s", g_missing);
	snprintf(want, sizeof want, "kmsd is not running at %s (connection refused", g_stale);
	const char *args[] = { "health", "--endpoint", stale, "--endpoint", missing,
	                       "--timeout", CALL_TIMEOUT, NULL };
	expect_down("KMS_TEST_KMS_ADMIN", args, want);
	run_bin_result r = run("KMS_TEST_KMS_ADMIN", args);
	assert_non_null(strstr(r.out, "none of the other 1 ipc endpoints is up"));
	run_bin_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_socket_file),
		cmocka_unit_test(stale_socket_file),
		cmocka_unit_test(every_endpoint_down),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
