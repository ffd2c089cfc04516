/*
 * test_privilege_drop: kmsd started as root with [process] user = nobody
 * runs as nobody, with no capability, undumpable and without core dumps
 * (docs/security.md, "Privileges"; kms/kmsd_privs.h).
 *
 * The test folder (the SoftHSM token, the data dir, the socket's
 * directory) is given to nobody (uid 65534 on Debian: nothing is added to
 * the machine), as an operator would with chown -R.
 *
 * (1) runs_as_the_user: every thread of kmsd has nobody's four uids and
 *     gids and no capability (CapEff, CapPrm, CapInh, CapAmb), NoNewPrivs,
 *     core dumps off (/proc/PID/limits) and undumpable (/proc/PID/mem is
 *     root's while the process is nobody's: the kernel gives a
 *     non-dumpable process's /proc files to root). It serves CreateKey,
 *     Encrypt, Decrypt and RotateKey (which make token objects and store
 *     rows as nobody), a restart later decrypts the first blob and makes a
 *     new key, and nothing in the folder belongs to root afterwards.
 * (2) refuses_a_data_dir_of_another: a data dir with a file of root's:
 *     kmsd exits 1 saying which and the chown that fixes it.
 *
 * Needs root; skips, saying so, otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <errno.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define USER "nobody"
#define STATUS_MAX 8192
#define EXIT_WAIT_MS 30000

static harness H;
static uid_t user_uid;
static gid_t user_gid;

/* Whether user USER can reach path (a child process becomes it and looks). */
static bool user_reaches(const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setgid(user_gid) != 0 || setuid(user_uid) != 0)
			_exit(2);
		struct stat st;
		_exit(stat(path, &st) == 0 ? 0 : 1);
	}
	int status = 0;
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

static bool skipping(void)
{
	if (geteuid() != 0 || !getpwnam(USER)) {
		print_message("SKIPPED: starting kmsd as root and checking that it becomes user "
		              USER " needs root and that user\n");
		return true;
	}
	/* The test folder's parent (made 0700 by tests/support/with-token)
	 * must let the user through to the folder: search only, no listing. */
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	assert_non_null(dir);
	char parent[700];
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	assert_non_null(slash);
	*slash = '\0';
	struct stat st;
	assert_int_equal(stat(parent, &st), 0);
	if (!(st.st_mode & S_IXOTH))
		assert_int_equal(chmod(parent, (st.st_mode & 07777) | S_IXOTH), 0);
	if (!user_reaches(parent)) {
		print_message("SKIPPED: user " USER " cannot reach %s (a directory above it is "
		              "closed to others); build elsewhere to run this test\n", parent);
		return true;
	}
	return false;
}

static char *read_small(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, STATUS_MAX);
	size_t len = buf ? fread(buf, 1, STATUS_MAX - 1, f) : 0;
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* "Uid:" or "Gid:" with all four ids want. */
static bool ids_are(const char *status, const char *field, unsigned want)
{
	const char *at = strstr(status, field);
	unsigned id[4];
	return at && sscanf(at + strlen(field), " %u %u %u %u", &id[0], &id[1], &id[2], &id[3]) ==
	                     4 && id[0] == want && id[1] == want && id[2] == want && id[3] == want;
}

static bool field_hex_zero(const char *status, const char *field)
{
	const char *at = strstr(status, field);
	unsigned long long v = 1;
	return at && sscanf(at + strlen(field), " %llx", &v) == 1 && v == 0;
}

/* Every task of kmsd: the user's ids, no capability, no_new_privs. */
static void check_every_task(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	unsigned tasks = 0;
	struct dirent *e;
	while ((e = readdir(d)) && tasks < 4096) {
		if (e->d_name[0] == '.')
			continue;
		char file[300];
		snprintf(file, sizeof file, "/proc/%d/task/%s/status", (int)pid, e->d_name);
		char *status = read_small(file);
		if (!status)
			continue; /* a thread that just ended */
		tasks++;
		if (!ids_are(status, "Uid:", user_uid) || !ids_are(status, "Gid:", user_gid))
			fail_msg("task %s is not all " USER "'s:\n%s", e->d_name, status);
		static const char *const caps[] = { "CapEff:", "CapPrm:", "CapInh:", "CapAmb:" };
		for (size_t i = 0; i < 4; i++)
			if (!field_hex_zero(status, caps[i]))
				fail_msg("task %s has %s not 0", e->d_name, caps[i]);
		if (!strstr(status, "NoNewPrivs:\t1"))
			fail_msg("task %s has no NoNewPrivs", e->d_name);
		free(status);
	}
	closedir(d);
	print_message("%u tasks of kmsd: uid/gid %u/%u, no capabilities\n", tasks,
	              (unsigned)user_uid, (unsigned)user_gid);
	assert_true(tasks > 1);
}

/* Core dumps off, and undumpable: a non-dumpable process's /proc/PID
 * files belong to root, whoever it runs as. */
static void check_no_dumps(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
	char *limits = read_small(path);
	assert_non_null(limits);
	const char *core = strstr(limits, "Max core file size");
	assert_non_null(core);
	unsigned long long soft = 1, hard = 1;
	assert_int_equal(sscanf(core, "Max core file size %llu %llu", &soft, &hard), 2);
	assert_true(soft == 0 && hard == 0);
	free(limits);
	snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	if (st.st_uid != 0)
		fail_msg("%s belongs to uid %u: kmsd is dumpable", path, (unsigned)st.st_uid);
}

/* The first file under dir that is not the user's, or "". */
static char offender[1024];

static int not_users(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)type;
	(void)ftw;
	if (st->st_uid == user_uid)
		return 0;
	snprintf(offender, sizeof offender, "%s (uid %u)", path, (unsigned)st->st_uid);
	return 1;
}

static void check_all_users(const char *sub)
{
	char dir[700];
	snprintf(dir, sizeof dir, "%s/%s", H.dir, sub);
	offender[0] = '\0';
	assert_true(nftw(dir, not_users, 16, FTW_PHYS) >= 0);
	if (offender[0])
		fail_msg("%s is not " USER "'s", offender);
}

static void ok(Kms__Response *r)
{
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("status %d: %s", r->status, r->message ? r->message : "");
}

static void runs_as_the_user(void **state)
{
	(void)state;
	if (skipping())
		skip();
	harness_options o = { .run_as = USER };
	assert_true(harness_start(&H, &o));
	check_every_task(H.pid);
	check_no_dumps(H.pid);
	assert_true(harness_log_contains(&H, "running as user " USER));

	Kms__Response *k = e2e_create_key(&H);
	ok(k);
	char key[E2E_KEY_ID_SIZE];
	snprintf(key, sizeof key, "%s", k->create_key->key_metadata->key_id);
	kms__response__free_unpacked(k, NULL);
	Kms__Response *e = e2e_encrypt(&H, key, (const uint8_t *)"as nobody", 9);
	ok(e);
	size_t blob_len = e->encrypt->ciphertext_blob.len;
	uint8_t *blob = malloc(blob_len);
	assert_non_null(blob);
	memcpy(blob, e->encrypt->ciphertext_blob.data, blob_len);
	kms__response__free_unpacked(e, NULL);
	Kms__Response *r = e2e_rotate(&H, key);
	ok(r);
	kms__response__free_unpacked(r, NULL);
	Kms__Response *dr = e2e_decrypt(&H, blob, blob_len);
	ok(dr);
	assert_memory_equal(dr->decrypt->plaintext.data, "as nobody", 9);
	kms__response__free_unpacked(dr, NULL);
	check_every_task(H.pid); /* the threads started by the requests too */
	assert_int_equal(harness_stop(&H), 0);

	/* Restarted: as root again, then nobody; what nobody made is read. */
	assert_true(harness_start(&H, &o));
	check_every_task(H.pid);
	dr = e2e_decrypt(&H, blob, blob_len);
	ok(dr);
	assert_memory_equal(dr->decrypt->plaintext.data, "as nobody", 9);
	kms__response__free_unpacked(dr, NULL);
	k = e2e_create_key(&H);
	ok(k);
	kms__response__free_unpacked(k, NULL);
	assert_int_equal(harness_stop(&H), 0);
	free(blob);
	check_all_users("data");
	check_all_users("tokens");
}

static void refuses_a_data_dir_of_another(void **state)
{
	(void)state;
	if (skipping())
		skip();
	/* Made by the harness as root, the store in it too; the config names
	 * the user, but the folder is not given to it. */
	harness h = { 0 };
	harness_options o = { .data_subdir = "data-of-root",
	                      .extra_config = "[process]\nuser = " USER "\n" };
	assert_true(harness_spawn(&h, &o));
	int code = 0;
	assert_true(e2e_wait_exit(&h, EXIT_WAIT_MS, &code));
	assert_int_equal(code, 1);
	char *log = harness_read_file(h.log, NULL);
	assert_non_null(log);
	char want[900];
	snprintf(want, sizeof want, "belongs to uid 0, not to " USER " ([process] user), who "
	         "kmsd runs as: chown -R " USER ":");
	if (!strstr(log, want))
		fail_msg("kmsd's log does not say \"%s\":\n%s", want, log);
	free(log);
}

static int setup(void **state)
{
	(void)state;
	struct passwd *pw = getpwnam(USER);
	if (pw) {
		user_uid = pw->pw_uid;
		user_gid = pw->pw_gid;
	}
	return 0;
}

int main(void)
{
	if (geteuid() != 0 || !getpwnam(USER)) { /* ctest reports 77 as skipped, not passed */
		printf("SKIPPED: starting kmsd as root and checking that it becomes user " USER
		       " needs root and that user\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(runs_as_the_user),
		cmocka_unit_test(refuses_a_data_dir_of_another),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
