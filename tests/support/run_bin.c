/*
 * run_bin.c: run a program with a bound, its outputs in memory (run_bin.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/run_bin.h"

extern char **environ;

#define RUN_BIN_ARGS_MAX 64    /* arguments after argv[0] */
#define RUN_BIN_ENV_MAX 1024   /* variables handed on */
#define RUN_BIN_STEP_MS 5      /* the longest a wait sleeps before it looks again */
#define RUN_BIN_COMMAND_MAX 300

static uint64_t run_bin_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* "bin arg arg ..." for failure messages, cut at cap. */
static void run_bin_command(char *text, size_t cap, const char *bin, const char *const *args)
{
	int n = snprintf(text, cap, "%s", bin);
	for (size_t i = 0; args && args[i] && n >= 0 && (size_t)n < cap; i++)
		n += snprintf(text + n, cap - (size_t)n, " %s", args[i]);
	if (n < 0 || (size_t)n >= cap)
		snprintf(text + cap - 4, 4, "...");
}

/* The environment to hand on: environ less drop_prefix, plus add. */
static char **run_bin_env(const run_bin_options *o, const char *command)
{
	if (!o->env && !o->drop_env_prefix)
		return environ;
	char **env = calloc(RUN_BIN_ENV_MAX + 1, sizeof *env);
	assert_non_null(env);
	size_t n = 0, drop = o->drop_env_prefix ? strlen(o->drop_env_prefix) : 0;
	for (char **e = environ; *e; e++) {
		if (drop && strncmp(*e, o->drop_env_prefix, drop) == 0)
			continue;
		if (n == RUN_BIN_ENV_MAX) {
			free(env);
			fail_msg("%s: more than %d environment variables", command, RUN_BIN_ENV_MAX);
		}
		env[n++] = *e;
	}
	for (size_t i = 0; o->env && o->env[i]; i++) {
		if (n == RUN_BIN_ENV_MAX) {
			free(env);
			fail_msg("%s: more than %d environment variables", command, RUN_BIN_ENV_MAX);
		}
		env[n++] = (char *)o->env[i];
	}
	env[n] = NULL;
	return env;
}

/* The whole of memory file fd as a string, or NULL when it holds more than
 * RUN_BIN_OUTPUT_MAX bytes or cannot be read. */
static char *run_bin_slurp(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > RUN_BIN_OUTPUT_MAX)
		return NULL;
	size_t len = (size_t)st.st_size;
	char *text = malloc(len + 1);
	if (!text)
		return NULL;
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, text + got, len - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* shorter than fstat said: keep what is there */
		got += (size_t)r;
	}
	text[got] = '\0';
	return text;
}

/* Woken by the child's pidfd where the kernel has one, else looking every
 * RUN_BIN_STEP_MS. */
bool run_bin_wait(pid_t pid, unsigned wait_ms, int *status)
{
	uint64_t deadline = run_bin_now_ms() + wait_ms;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	bool done = false;
	for (;;) {
		pid_t got = waitpid(pid, status, WNOHANG);
		if (got == pid || (got < 0 && errno != EINTR)) {
			done = got == pid;
			break;
		}
		uint64_t now = run_bin_now_ms();
		if (now >= deadline)
			break;
		uint64_t left = deadline - now;
		if (pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			(void)poll(&p, 1, left > 1000 ? 1000 : (int)left);
		} else {
			uint64_t ms = left < RUN_BIN_STEP_MS ? left : RUN_BIN_STEP_MS;
			struct timespec ts = { 0, (long)ms * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return done;
}

run_bin_result run_bin(const char *bin, const char *const *args, const run_bin_options *o)
{
	static const run_bin_options defaults;
	if (!o)
		o = &defaults;
	char command[RUN_BIN_COMMAND_MAX];
	run_bin_command(command, sizeof command, bin, args);

	const char *argv[RUN_BIN_ARGS_MAX + 2] = { bin };
	size_t n = 1;
	for (size_t i = 0; args && args[i]; i++) {
		if (i == RUN_BIN_ARGS_MAX)
			fail_msg("%s: more than %d arguments", command, RUN_BIN_ARGS_MAX);
		argv[n++] = args[i];
	}
	argv[n] = NULL;

	int out_fd = memfd_create("run_bin.out", MFD_CLOEXEC);
	int err_fd = o->merge_stderr ? -1 : memfd_create("run_bin.err", MFD_CLOEXEC);
	if (out_fd < 0 || (!o->merge_stderr && err_fd < 0))
		fail_msg("%s: memfd_create: %s", command, strerror(errno));
	char **env = run_bin_env(o, command);

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, o->in_path ? o->in_path : "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, o->merge_stderr ? out_fd : err_fd, 2);
	uint64_t t0 = run_bin_now_ms();
	pid_t pid;
	int rc = strchr(bin, '/') ? posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, env)
	                          : posix_spawnp(&pid, bin, &fa, NULL, (char *const *)argv, env);
	posix_spawn_file_actions_destroy(&fa);
	if (env != environ)
		free(env);
	if (rc != 0) {
		close(out_fd);
		if (err_fd >= 0)
			close(err_fd);
		fail_msg("%s could not be started: %s", command, strerror(rc));
	}

	unsigned wait_ms = o->wait_ms ? o->wait_ms : RUN_BIN_WAIT_MS;
	int status = -1;
	if (!run_bin_wait(pid, wait_ms, &status)) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		close(out_fd);
		if (err_fd >= 0)
			close(err_fd);
		fail_msg("%s did not finish within %u ms (killed)", command, wait_ms);
	}
	uint64_t ms = run_bin_now_ms() - t0;
	run_bin_result r = {
		.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		.out = run_bin_slurp(out_fd),
		.err = err_fd >= 0 ? run_bin_slurp(err_fd) : strdup(""),
		.ms = ms,
	};
	close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	if (!r.out || !r.err) {
		run_bin_free(&r);
		fail_msg("%s: its output could not be read or is over %u bytes", command,
		         RUN_BIN_OUTPUT_MAX);
	}
	return r;
}

void run_bin_free(run_bin_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

run_bin_result run_kms_admin(const char *endpoint, const char *const *args)
{
	const char *argv[40];
	size_t n = 0;
	for (size_t i = 0; args[i]; i++) {
		assert_true(n < 32);
		argv[n++] = args[i];
	}
	argv[n++] = "--endpoint";
	argv[n++] = endpoint;
	argv[n++] = "--timeout";
	argv[n++] = "10000";
	argv[n] = NULL;
	const char *bin = getenv("KMS_TEST_KMS_ADMIN");
	assert_non_null(bin);
	run_bin_options o = { .wait_ms = RUN_BIN_WAIT_MS };
	return run_bin(bin, argv, &o);
}
