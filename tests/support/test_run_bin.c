/*
 * test_run_bin: run_bin (run_bin.h) on real processes: the exit code,
 * stdout and stderr apart or merged, stdin from a file or /dev/null, the
 * environment less a prefix plus variables, a signal's end, run_bin_wait on
 * forked children, and the bound: a program that outlives it is killed and
 * the test fails naming it (seen from outside, by running this binary again
 * as a child whose one test runs `sleep 30` with a 300 ms bound).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/run_bin.h"

#define CHILD_FLAG "--bound-child"
#define CHILD_WAIT_MS 300      /* the bound the child's test gives sleep 30 */
#define OUTER_WAIT_MS 20000    /* ours on the child */

static void outputs_apart_and_exit_code(void **state)
{
	(void)state;
	run_bin_result r = run_bin("/bin/sh", (const char *const[]){
		"-c", "printf 'to out'; printf 'to err' >&2; exit 7", NULL }, NULL);
	assert_int_equal(r.code, 7);
	assert_string_equal(r.out, "to out");
	assert_string_equal(r.err, "to err");
	run_bin_free(&r);
}

static void outputs_merged(void **state)
{
	(void)state;
	run_bin_options o = { .merge_stderr = true };
	run_bin_result r = run_bin("/bin/sh", (const char *const[]){
		"-c", "printf 'one '; printf 'two ' >&2; printf three", NULL }, &o);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.out, "one two three");
	assert_string_equal(r.err, "");
	run_bin_free(&r);
}

static void stdin_from_a_file_or_dev_null(void **state)
{
	(void)state;
	char path[] = "/tmp/kms-run-bin-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "line 1\nline 2\n", 14), 14);
	close(fd);
	run_bin_options o = { .in_path = path };
	run_bin_result r = run_bin("cat", NULL, &o); /* looked up in PATH */
	unlink(path);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.out, "line 1\nline 2\n");
	run_bin_free(&r);

	r = run_bin("cat", NULL, NULL);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.out, "");
	run_bin_free(&r);
}

static void environment_less_a_prefix_plus_variables(void **state)
{
	(void)state;
	assert_int_equal(setenv("RUN_BIN_T_DROPPED", "inherited", 1), 0);
	assert_int_equal(setenv("RUN_BIN_KEPT", "inherited", 1), 0);
	const char *const script =
		"printf '%s %s %s' \"${RUN_BIN_T_DROPPED-unset}\" \"$RUN_BIN_KEPT\" \"$RUN_BIN_T_ADDED\"";
	run_bin_options o = { .drop_env_prefix = "RUN_BIN_T_",
		              .env = (const char *const[]){ "RUN_BIN_T_ADDED=added", NULL } };
	run_bin_result r = run_bin("/bin/sh", (const char *const[]){ "-c", script, NULL }, &o);
	assert_string_equal(r.out, "unset inherited added");
	run_bin_free(&r);
	/* Without options the environment is the test's own. */
	r = run_bin("/bin/sh", (const char *const[]){ "-c", script, NULL }, NULL);
	assert_string_equal(r.out, "inherited inherited ");
	run_bin_free(&r);
}

static void a_signal_is_not_an_exit_code(void **state)
{
	(void)state;
	run_bin_result r = run_bin("/bin/sh", (const char *const[]){ "-c", "kill -9 $$", NULL },
	                           NULL);
	assert_int_equal(r.code, -1);
	run_bin_free(&r);
}

/* run_bin_wait on forked children: one that exits, one that never does. */
static void waits_for_a_child_with_a_bound(void **state)
{
	(void)state;
	int status = 0;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(3);
	assert_true(run_bin_wait(pid, OUTER_WAIT_MS, &status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 3);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (;;)
			pause(); /* until killed */
	}
	bool exited = run_bin_wait(pid, CHILD_WAIT_MS, &status);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_false(exited);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* In the child: the one test, which must fail. */
static void child_sleeps_past_the_bound(void **state)
{
	(void)state;
	run_bin_options o = { .wait_ms = CHILD_WAIT_MS };
	run_bin_result r = run_bin("sleep", (const char *const[]){ "30", NULL }, &o);
	run_bin_free(&r); /* not reached */
}

static void past_the_bound_it_is_killed_and_named(void **state)
{
	(void)state;
	/* This binary by its path, not "/proc/self/exe": under valgrind (scripts/
	 * valgrind) that is valgrind's launcher, while readlink gives ours. */
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	assert_true(n > 0);
	self[n] = '\0';
	run_bin_options o = { .merge_stderr = true, .wait_ms = OUTER_WAIT_MS };
	run_bin_result r = run_bin(self, (const char *const[]){ CHILD_FLAG, NULL }, &o);
	printf("# the child: exit %d after %llu ms\n", r.code, (unsigned long long)r.ms);
	char want[80];
	snprintf(want, sizeof want, "sleep 30 did not finish within %d ms (killed)", CHILD_WAIT_MS);
	if (r.code != 1 || !strstr(r.out, want))
		fail_msg("the child: exit %d (want 1: its one test failed), output:\n%s", r.code,
		         r.out);
	run_bin_free(&r);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], CHILD_FLAG) == 0) {
		const struct CMUnitTest child[] = {
			cmocka_unit_test(child_sleeps_past_the_bound),
		};
		return cmocka_run_group_tests(child, NULL, NULL);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(outputs_apart_and_exit_code),
		cmocka_unit_test(outputs_merged),
		cmocka_unit_test(stdin_from_a_file_or_dev_null),
		cmocka_unit_test(environment_less_a_prefix_plus_variables),
		cmocka_unit_test(a_signal_is_not_an_exit_code),
		cmocka_unit_test(waits_for_a_child_with_a_bound),
		cmocka_unit_test(past_the_bound_it_is_killed_and_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
