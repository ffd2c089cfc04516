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

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CALL_TIMEOUT "10000" /* what kms-admin is told to wait, at most */
#define FAST_MS 2000         /* it must be done well before that */
#define CLI_WAIT_MS 20000    /* our own bound on the process */
#define OUTPUT_MAX 4096

static char g_dir[64];
static char g_stale[128];   /* a socket file nobody listens on */
static char g_missing[128]; /* a path with nothing at it */
static char g_out[128];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/kms-ipc-down-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	snprintf(g_stale, sizeof g_stale, "%s/kms.sock", g_dir);
	snprintf(g_missing, sizeof g_missing, "%s/none/kms.sock", g_dir);
	snprintf(g_out, sizeof g_out, "%s/out", g_dir);
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
	unlink(g_out);
	rmdir(g_dir);
	return 0;
}

/* Runs BIN ARGS (env KMS_TEST_<WHICH>) with stdout and stderr into out;
 * the exit code, the output and how long it took. */
static int run(const char *which, const char *const *args, char *out, uint64_t *took_ms)
{
	const char *bin = getenv(which);
	assert_non_null(bin);
	const char *argv[16] = { bin };
	size_t n = 1;
	for (; args[n - 1] && n < 15; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, g_out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	uint64_t t0 = now_ms();
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	int status = -1;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() - t0 > CLI_WAIT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("%s did not finish within %d ms", bin, CLI_WAIT_MS);
		}
		struct timespec ts = { 0, 5000000L };
		nanosleep(&ts, NULL); /* polling the child's exit, bounded above */
	}
	*took_ms = now_ms() - t0;
	FILE *f = fopen(g_out, "r");
	assert_non_null(f);
	size_t len = fread(out, 1, OUTPUT_MAX - 1, f);
	fclose(f);
	out[len] = '\0';
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Exit 3, one line holding want, well before the timeout. */
static void expect_down(const char *which, const char *const *args, const char *want)
{
	char out[OUTPUT_MAX];
	uint64_t took;
	int code = run(which, args, out, &took);
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
	char out[OUTPUT_MAX];
	uint64_t took;
	(void)run("KMS_TEST_KMS_ADMIN", args, out, &took);
	assert_non_null(strstr(out, "none of the other 1 ipc endpoints is up"));
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
