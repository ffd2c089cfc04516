/*
 * run_bin.h: run a program the way its user would (a process, its exit
 * code, what it printed) from a cmocka test, with a bound.
 *
 * The program gets argv[0] = bin and the given arguments, stdin from
 * /dev/null or a file, the test's environment (less a prefix, plus
 * variables if asked), and stdout and stderr each into a memory file. Past
 * the bound it is killed and the test fails naming the command; a program
 * that prints more than RUN_BIN_OUTPUT_MAX fails the test too. Nothing is
 * left on disk.
 */
#ifndef KMS_TESTS_RUN_BIN_H
#define KMS_TESTS_RUN_BIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define RUN_BIN_WAIT_MS 30000          /* the bound when none is given */
#define RUN_BIN_OUTPUT_MAX (4u << 20)  /* bytes kept from stdout, and from stderr */

typedef struct run_bin_options {
	const char *in_path;          /* stdin; NULL: /dev/null */
	const char *const *env;       /* NAME=VALUE added (NULL-terminated), or NULL */
	const char *drop_env_prefix;  /* inherited variables named so are left out */
	bool merge_stderr;            /* stderr into out, interleaved as written */
	unsigned wait_ms;             /* the bound; 0: RUN_BIN_WAIT_MS */
} run_bin_options;

typedef struct run_bin_result {
	int code;     /* its exit code; -1 when a signal ended it */
	char *out;    /* stdout (and stderr when merged), malloc'ed, NUL-terminated */
	char *err;    /* stderr, malloc'ed; "" when merged */
	uint64_t ms;  /* from the spawn to its exit */
} run_bin_result;

/* Runs bin (a path, or a name looked up in PATH) with args (NULL-terminated;
 * NULL: none) and o (NULL: the defaults). Fails the test if it cannot be
 * started, does not exit within the bound, or prints too much. */
run_bin_result run_bin(const char *bin, const char *const *args, const run_bin_options *o);

/* Runs kms-admin ($KMS_TEST_KMS_ADMIN) with args (NULL-terminated, at most
 * 32) and then --endpoint endpoint --timeout 10000, within RUN_BIN_WAIT_MS:
 * what the CLI tests against a harness kmsd share. */
run_bin_result run_kms_admin(const char *endpoint, const char *const *args);

/* Waits at most wait_ms for pid (a child of this process) to exit: true
 * with its wait status in *status, false while it still runs (the caller
 * kills it). For children that are not a program run_bin started. */
bool run_bin_wait(pid_t pid, unsigned wait_ms, int *status);

/* Frees out and err. */
void run_bin_free(run_bin_result *r);

#endif
