/*
 * test_cli_principals: the real kms-admin against a real kmsd for
 * principal, access-key, grant and key policy grant|revoke, as a security
 * team runs them (processes, files, exit codes, stdout and stderr apart):
 *
 *  - each command's text and --json output, and its documented failures
 *    (exit 1 with one line naming the cause, exit 2 for a bad command line);
 *  - access-key create --output FILE writes the credentials file (mode
 *    0600 even under umask 022, replaced whole, no temporary file left)
 *    and prints no secret; without --output the secret is on stdout once,
 *    with a warning on stderr, and never on stderr;
 *  - key policy grant appends an Allow statement that get shows, starting
 *    from the default policy kmsd applies (here the harness's configured
 *    one, Sid test-admin-all); revoke removes it by Sid; a Sid in use and
 *    an unknown Sid are refused (test_policy_default: the built-in
 *    default, and get's is_default).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/harness.h"
#include "tests/support/run_bin.h"


static harness H;

static run_bin_result admin_run(const char *const *args)
{
	return run_kms_admin(H.ipc_url, args);
}

#define ADMIN(...) admin_run((const char *const[]){ __VA_ARGS__, NULL })

/* Fails unless r exited code with in_out in stdout and in_err in stderr
 * (NULL: anything). */
static void expect(run_bin_result *r, int code, const char *in_out, const char *in_err,
                   const char *what)
{
	if (r->code != code || (in_out && !strstr(r->out, in_out)) ||
	    (in_err && !strstr(r->err, in_err)))
		fail_msg("%s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout~\"%s\" "
		         "stderr~\"%s\"", what, r->code, code, r->out, r->err, in_out ? in_out : "",
		         in_err ? in_err : "");
}

static json_t *parse_json(const char *text, const char *what)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		fail_msg("%s is not JSON (%s): %s", what, jerr.text, text);
	return j;
}

static int start(void **state)
{
	(void)state;
	harness_options o = { 0 };
	umask(022); /* the usual one: a file made without care is world-readable */
	return harness_start(&H, &o) ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	return harness_stop(&H) == 0 ? 0 : -1;
}

static void principal_commands(void **state)
{
	(void)state;
	run_bin_result r = ADMIN("principal", "create", "payments-svc", "--role", "app",
	                         "--role", "auditor", "--cert-name", "payments.example");
	expect(&r, 0, "app,auditor", NULL, "principal create");
	assert_non_null(strstr(r.out, "payments.example"));
	run_bin_free(&r);

	r = ADMIN("principal", "create", "payments-svc", "--role", "app");
	expect(&r, 1, NULL, "ALREADY_EXISTS", "principal create, a name in use");
	run_bin_free(&r);
	r = ADMIN("principal", "create", "no-role");
	expect(&r, 2, NULL, "--role", "principal create without a role");
	run_bin_free(&r);
	r = ADMIN("principal", "create", "x", "--role", "root");
	expect(&r, 2, NULL, "admin, app or auditor", "principal create, unknown role");
	run_bin_free(&r);

	r = ADMIN("principal", "list");
	expect(&r, 0, "payments-svc", NULL, "principal list");
	assert_non_null(strstr(r.out, "NAME"));
	assert_non_null(strstr(r.out, "ENABLED"));
	run_bin_free(&r);

	r = ADMIN("--json", "principal", "describe", "payments-svc");
	expect(&r, 0, NULL, NULL, "principal describe --json");
	json_t *j = parse_json(r.out, "describe --json");
	assert_string_equal(json_string_value(json_object_get(j, "state")), "ENABLED");
	assert_int_equal(json_array_size(json_object_get(j, "roles")), 2);
	json_decref(j);
	run_bin_free(&r);

	r = ADMIN("principal", "disable", "payments-svc");
	expect(&r, 0, "disabled", NULL, "principal disable");
	run_bin_free(&r);
	r = ADMIN("principal", "describe", "payments-svc");
	expect(&r, 0, "DISABLED", NULL, "describe after disable");
	run_bin_free(&r);
	r = ADMIN("principal", "enable", "payments-svc");
	expect(&r, 0, "enabled", NULL, "principal enable");
	run_bin_free(&r);

	r = ADMIN("principal", "describe", "nobody-here");
	expect(&r, 1, NULL, "NOT_FOUND", "describe an unknown principal");
	run_bin_free(&r);

	r = ADMIN("principal", "create", "short-lived", "--role", "app");
	expect(&r, 0, NULL, NULL, "principal create short-lived");
	run_bin_free(&r);
	r = ADMIN("principal", "delete", "short-lived");
	expect(&r, 0, "deleted", NULL, "principal delete");
	run_bin_free(&r);
	r = ADMIN("principal", "create", "short-lived", "--role", "app");
	expect(&r, 1, NULL, "never reused", "a deleted name is not reusable");
	run_bin_free(&r);
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static int count_prefixed(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

/* The value of "key = " in a credentials file's text, copied into out. */
static void cred_value(const char *text, const char *key, char *out, size_t cap)
{
	char needle[64];
	snprintf(needle, sizeof needle, "\n%s = ", key);
	const char *at = strstr(text, needle);
	assert_non_null(at);
	at += strlen(needle);
	size_t len = strcspn(at, "\n");
	assert_true(len < cap);
	memcpy(out, at, len);
	out[len] = '\0';
}

static void access_key_commands(void **state)
{
	(void)state;
	run_bin_result r = ADMIN("principal", "create", "batch-job", "--role", "app");
	expect(&r, 0, NULL, NULL, "principal create batch-job");
	run_bin_free(&r);

	/* --output: the credentials file, 0600, replacing a world-readable one. */
	char path[700];
	snprintf(path, sizeof path, "%s/batch-job.cred", H.dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "old\n", 4), 4);
	close(fd);
	r = ADMIN("access-key", "create", "batch-job", "--output", path);
	expect(&r, 0, "credentials written to", NULL, "access-key create --output");
	assert_null(strstr(r.out, "secret"));
	run_bin_free(&r);
	assert_int_equal(mode_of(path), 0600);
	assert_int_equal(count_prefixed(H.dir, ".batch-job.cred."), 0);
	size_t len = 0;
	char *text = harness_read_file(path, &len);
	assert_non_null(text);
	assert_non_null(strstr(text, "# kms credentials: principal batch-job"));
	char id[32], secret[80], principal[80];
	cred_value(text, "principal", principal, sizeof principal);
	cred_value(text, "access_key_id", id, sizeof id);
	cred_value(text, "secret", secret, sizeof secret);
	assert_string_equal(principal, "batch-job");
	assert_int_equal(strlen(id), 22);
	assert_int_equal(strlen(secret), 64);
	assert_int_equal(strspn(secret, "0123456789abcdef"), 64);
	free(text);
	/* The clients load it as it is (docs/request-signing.md, "Credentials
	 * file"): a file they could not use fails before any request. */
	r = ADMIN("--credentials", path, "health");
	expect(&r, 0, NULL, NULL, "kms-admin --credentials with the written file");
	run_bin_free(&r);

	/* A pipe at the path is refused before a key is made (a reader at its
	 * other end would get the secret), and so is a directory. */
	char fifo[700];
	snprintf(fifo, sizeof fifo, "%s/cred.fifo", H.dir);
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0666), 0);
	r = ADMIN("access-key", "create", "batch-job", "--output", fifo);
	expect(&r, 2, NULL, "is not a regular file", "access-key create --output FIFO");
	run_bin_free(&r);
	unlink(fifo);
	r = ADMIN("access-key", "create", "batch-job", "--output", H.dir);
	expect(&r, 2, NULL, "is not a regular file", "access-key create --output DIR");
	run_bin_free(&r);

	/* Without --output: stdout once, the warning on stderr, no secret there. */
	r = ADMIN("access-key", "create", "batch-job");
	expect(&r, 0, "secret = ", "only time", "access-key create to stdout");
	assert_null(strstr(r.err, "secret ="));
	char second_id[32], second_secret[80];
	cred_value(r.out, "access_key_id", second_id, sizeof second_id);
	cred_value(r.out, "secret", second_secret, sizeof second_secret);
	assert_null(strstr(r.err, second_secret));
	run_bin_free(&r);

	/* A third active key is refused. */
	r = ADMIN("access-key", "create", "batch-job");
	expect(&r, 1, NULL, "FAILED_PRECONDITION", "a third active access key");
	assert_non_null(strstr(r.err, "revoke one first"));
	assert_null(strstr(r.out, "secret"));
	run_bin_free(&r);

	r = ADMIN("access-key", "revoke", id);
	expect(&r, 0, "revoked", NULL, "access-key revoke");
	run_bin_free(&r);
	r = ADMIN("access-key", "revoke", id);
	expect(&r, 1, NULL, "already revoked", "revoking twice");
	run_bin_free(&r);

	r = ADMIN("--json", "access-key", "list", "batch-job");
	expect(&r, 0, NULL, NULL, "access-key list --json");
	json_t *j = parse_json(r.out, "access-key list --json");
	json_t *keys = json_object_get(j, "access_keys");
	assert_int_equal(json_array_size(keys), 2);
	size_t i;
	json_t *k;
	int revoked = 0;
	json_array_foreach(keys, i, k) {
		const char *st = json_string_value(json_object_get(k, "state"));
		if (!strcmp(json_string_value(json_object_get(k, "access_key_id")), id)) {
			assert_string_equal(st, "REVOKED");
			assert_true(json_integer_value(json_object_get(k, "revoked_at")) > 0);
			revoked++;
		} else {
			assert_string_equal(st, "ACTIVE");
		}
	}
	assert_int_equal(revoked, 1);
	json_decref(j);
	run_bin_free(&r);

	r = ADMIN("access-key", "list", "batch-job");
	expect(&r, 0, "REVOKED", NULL, "access-key list");
	assert_non_null(strstr(r.out, "ACCESS KEY ID"));
	assert_null(strstr(r.out, second_secret));
	run_bin_free(&r);

	r = ADMIN("access-key", "list", "nobody-here");
	expect(&r, 1, NULL, "NOT_FOUND", "access-key list of an unknown principal");
	run_bin_free(&r);

	/* Neither secret in kmsd's log. */
	text = harness_read_file(H.log, &len);
	assert_non_null(text);
	assert_null(strstr(text, secret));
	assert_null(strstr(text, second_secret));
	free(text);
}

static void grant_commands(void **state)
{
	(void)state;
	char key[35];
	assert_true(harness_create_key(&H, "alias/cli-grant", key));
	run_bin_result r = ADMIN("principal", "create", "reader", "--role", "app");
	expect(&r, 0, NULL, NULL, "principal create reader");
	run_bin_free(&r);

	r = ADMIN("--json", "grant", "create", "--key", "alias/cli-grant", "--grantee", "reader",
	          "--op", "decrypt", "--op", "encrypt", "--context", "tenant=acme");
	expect(&r, 0, NULL, NULL, "grant create --json");
	json_t *j = parse_json(r.out, "grant create --json");
	char id[32];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "grant_id")));
	assert_int_equal(strlen(id), 22);
	assert_string_equal(json_string_value(json_object_get(j, "key_id")), key);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "context"),
	                                                      "tenant")), "acme");
	assert_string_equal(json_string_value(json_object_get(j, "state")), "LIVE");
	json_decref(j);
	run_bin_free(&r);

	r = ADMIN("grant", "create", "--key", "alias/no-such", "--grantee", "reader", "--op",
	          "decrypt");
	expect(&r, 1, NULL, "NOT_FOUND", "grant on an unknown key");
	run_bin_free(&r);
	r = ADMIN("grant", "create", "--key", key, "--grantee", "reader", "--op", "rotate_key");
	expect(&r, 1, NULL, "not a data-plane operation", "grant of a control operation");
	run_bin_free(&r);
	r = ADMIN("grant", "create", "--key", key, "--grantee", "reader");
	expect(&r, 2, NULL, "--op", "grant create without --op");
	run_bin_free(&r);
	r = ADMIN("grant", "list");
	expect(&r, 2, NULL, "--key", "grant list without a filter");
	run_bin_free(&r);

	r = ADMIN("grant", "list", "--key", "alias/cli-grant");
	expect(&r, 0, id, NULL, "grant list --key");
	assert_non_null(strstr(r.out, "decrypt,encrypt"));
	assert_non_null(strstr(r.out, "tenant=acme"));
	run_bin_free(&r);
	r = ADMIN("grant", "list", "--grantee", "reader", "--key", key);
	expect(&r, 0, id, NULL, "grant list --grantee --key");
	run_bin_free(&r);

	r = ADMIN("grant", "revoke", id);
	expect(&r, 0, "revoked", NULL, "grant revoke");
	run_bin_free(&r);
	r = ADMIN("grant", "retire", "GRAAAAAAAAAAAAAAAAAAAA");
	expect(&r, 1, NULL, "NOT_FOUND", "retire an unknown grant");
	run_bin_free(&r);
	r = ADMIN("grant", "list", "--grantee", "reader");
	expect(&r, 0, "REVOKED", NULL, "grant list after revoke");
	run_bin_free(&r);
	r = ADMIN("grant", "revoke", "GRAAAAAAAAAAAAAAAAAAAA");
	expect(&r, 1, NULL, "NOT_FOUND", "revoke an unknown grant");
	run_bin_free(&r);
}

static void policy_commands(void **state)
{
	(void)state;
	char key[35];
	assert_true(harness_create_key(&H, "alias/cli-policy", key));
	run_bin_result r = ADMIN("key", "policy", "grant", "alias/cli-policy", "--principal",
	                         "payments-svc", "--op", "encrypt", "--op", "decrypt",
	                         "--context-equals", "purpose=billing", "--sid", "billing");
	expect(&r, 0, "billing added", "default policy", "key policy grant");
	run_bin_free(&r);

	r = ADMIN("--json", "key", "policy", "get", "alias/cli-policy");
	expect(&r, 0, NULL, NULL, "key policy get");
	json_t *j = parse_json(r.out, "policy get --json");
	json_t *statements = json_object_get(json_object_get(j, "policy"), "Statement");
	assert_int_equal(json_array_size(statements), 2);
	json_t *s0 = json_array_get(statements, 0), *s1 = json_array_get(statements, 1);
	assert_string_equal(json_string_value(json_object_get(s0, "Sid")), "test-admin-all");
	assert_string_equal(json_string_value(json_object_get(s1, "Sid")), "billing");
	assert_string_equal(json_string_value(json_object_get(s1, "Principal")), "payments-svc");
	assert_string_equal(json_string_value(json_object_get(json_object_get(
	                        json_object_get(s1, "Condition"), "ContextEquals"), "purpose")),
	                    "billing");
	json_decref(j);
	run_bin_free(&r);

	r = ADMIN("key", "policy", "grant", key, "--principal", "payments-svc", "--op", "encrypt",
	          "--sid", "billing");
	expect(&r, 1, NULL, "already has a statement with Sid billing", "a Sid in use");
	run_bin_free(&r);

	r = ADMIN("key", "policy", "revoke", key, "--sid", "billing");
	expect(&r, 0, "billing removed", NULL, "key policy revoke");
	run_bin_free(&r);
	r = ADMIN("key", "policy", "revoke", key, "--sid", "billing");
	expect(&r, 1, NULL, "no statement with Sid billing", "revoke an unknown Sid");
	run_bin_free(&r);
	r = ADMIN("key", "policy", "revoke", key, "--sid", "test-admin-all");
	expect(&r, 1, NULL, "only one", "revoke the last statement");
	run_bin_free(&r);
	r = ADMIN("key", "policy", "get", key);
	expect(&r, 0, "test-admin-all", NULL, "policy get after revoke");
	assert_null(strstr(r.out, "billing"));
	run_bin_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(principal_commands),
		cmocka_unit_test(access_key_commands),
		cmocka_unit_test(grant_commands),
		cmocka_unit_test(policy_commands),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
