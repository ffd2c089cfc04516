/*
 * kmsd_privs.c: running as [process] user (kmsd_privs.h).
 */
#include "kms/kmsd_privs.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"

#define GROUPS_MAX 256
#define STATUS_MAX 8192
#define TASKS_MAX 4096  /* threads checked after the drop, at most */
#define WALK_FDS 16

bool kmsd_privs_dropping(const kmsd_config *cfg)
{
	return geteuid() == 0 && cfg->run_user[0] && cfg->run_uid != 0;
}

/* ---- step 1: what the user will need ---- */

/* The first thing in a tree that is not the user's (nftw has no argument
 * for its callback; kmsd is single-threaded here). */
static uid_t walk_uid;
static char walk_offender[KMSD_PATH_MAX];
static uid_t walk_offender_uid;

static int walk_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)type;
	(void)ftw;
	if (st->st_uid == walk_uid)
		return 0;
	snprintf(walk_offender, sizeof walk_offender, "%s", path);
	walk_offender_uid = st->st_uid;
	return 1;
}

/* dir and everything under it belongs to the user; a missing dir is
 * fine (kmsd creates it as the user). */
static kms_status check_tree(const kmsd_config *cfg, const char *dir, const char *what)
{
	struct stat st;
	if (lstat(dir, &st) != 0) {
		if (errno == ENOENT)
			return KMS_OK;
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s %s: %s", what, dir, strerror(errno));
	}
	walk_uid = cfg->run_uid;
	walk_offender[0] = '\0';
	int rc = nftw(dir, walk_one, WALK_FDS, FTW_PHYS);
	if (rc < 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s %s: cannot look through it: %s", what, dir,
		                strerror(errno));
	if (rc == 0)
		return KMS_OK;
	struct group *g = getgrgid(cfg->run_gid);
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s %s: %s belongs to uid %u, not to %s ([process] "
	                "user), who kmsd runs as: chown -R %s:%s %s", what, dir, walk_offender,
	                (unsigned)walk_offender_uid, cfg->run_user, cfg->run_user,
	                g ? g->gr_name : "GROUP", dir);
}

/* SoftHSM keeps its tokens in files, which kmsd (as the user) must read
 * and write: its token dir, from its config file. Other modules keep
 * nothing kmsd can see. */
static kms_status check_softhsm(const kmsd_config *cfg)
{
	const char *module = cfg->hsm_module[0] ? cfg->hsm_module : "libsofthsm2.so";
	if (!strstr(module, "softhsm"))
		return KMS_OK;
	const char *conf = getenv("SOFTHSM2_CONF");
	FILE *f = fopen(conf ? conf : "/etc/softhsm/softhsm2.conf", "r");
	if (!f)
		return KMS_OK; /* SoftHSM's own open says what is wrong */
	char line[KMSD_PATH_MAX + 64], dir[KMSD_PATH_MAX] = "";
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, " directories.tokendir = %1023s", dir) == 1)
			break;
		dir[0] = '\0';
	}
	fclose(f);
	return dir[0] ? check_tree(cfg, dir, "SoftHSM token dir") : KMS_OK;
}

void kmsd_privs_warn_root(const kmsd_config *cfg)
{
	if (geteuid() == 0 && !cfg->run_user[0])
		kms_log("warn", "running as root with all capabilities: set [process] user "
		        "(docs/config.md), or start kmsd as its own user (systemd: User=)");
}

kms_status kmsd_privs_check(const kmsd_config *cfg)
{
	if (!cfg->run_user[0] || geteuid() == cfg->run_uid)
		return KMS_OK;
	if (geteuid() != 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "[process] user = %s: kmsd runs as uid %u, "
		                "not root, and cannot switch users: start it as root or as %s "
		                "(systemd: User=%s), or remove the setting", cfg->run_user,
		                (unsigned)geteuid(), cfg->run_user, cfg->run_user);
	KMS_GUARD(check_tree(cfg, cfg->data_dir, "data_dir"));
	return check_softhsm(cfg);
}

void kmsd_privs_raise_memlock(const kmsd_config *cfg)
{
	rlim_t page = (rlim_t)sysconf(_SC_PAGESIZE);
	rlim_t need = ((rlim_t)cfg->max_locked_bytes + page - 1) / page * page;
	struct rlimit now;
	if (getrlimit(RLIMIT_MEMLOCK, &now) != 0 ||
	    (now.rlim_cur != RLIM_INFINITY && now.rlim_cur < need)) {
		struct rlimit want = { need, need };
		if (getrlimit(RLIMIT_MEMLOCK, &now) == 0 &&
		    (now.rlim_max == RLIM_INFINITY || now.rlim_max > need))
			want.rlim_max = now.rlim_max;
		if (setrlimit(RLIMIT_MEMLOCK, &want) != 0)
			kms_log("warn", "cannot raise RLIMIT_MEMLOCK to %llu bytes ([limits] "
			        "max_locked_bytes) before running as %s: %s; secret memory past "
			        "%llu bytes will not be locked (raise the hard limit: ulimit -l, "
			        "systemd: LimitMEMLOCK=)", (unsigned long long)need, cfg->run_user,
			        strerror(errno), (unsigned long long)now.rlim_cur);
	}
}

/* ---- step 3: files as the user ---- */

static unsigned threads_now(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned n = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "Threads: %u", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

kms_status kmsd_privs_act_as(const kmsd_config *cfg)
{
	unsigned threads = threads_now();
	if (threads != 1)
		return KMS_FAIL(KMS_INTERNAL, "cannot switch to user %s: kmsd already has %u "
		                "threads (the filesystem ids are each thread's own; a PKCS#11 module "
		                "that starts threads when opened does this): start kmsd as %s instead "
		                "(systemd: User=) and leave [process] user unset", cfg->run_user,
		                threads, cfg->run_user);
	/* The user's own groups while the files are made (the ipc sockets
	 * take [listen] ipc_group, which must be one of them); none after the
	 * drop. */
	gid_t groups[GROUPS_MAX];
	int n = GROUPS_MAX;
	if (getgrouplist(cfg->run_user, cfg->run_gid, groups, &n) < 0 ||
	    setgroups((size_t)n, groups) != 0)
		return KMS_FAIL(KMS_INTERNAL, "cannot take the groups of user %s: %s",
		                cfg->run_user, strerror(errno));
	setfsgid(cfg->run_gid);
	setfsuid(cfg->run_uid);
	/* Each returns the previous id: asking again shows what holds. */
	if ((gid_t)setfsgid((gid_t)-1) != cfg->run_gid || (uid_t)setfsuid((uid_t)-1) != cfg->run_uid)
		return KMS_FAIL(KMS_INTERNAL, "cannot act as user %s for files", cfg->run_user);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* a change of ids resets it */
	return KMS_OK;
}

/* ---- step 5: the drop and its checks ---- */

/* "Uid:" or "Gid:": all four ids are want. */
static bool ids_are(const char *status, const char *field, unsigned want)
{
	const char *at = strstr(status, field);
	unsigned id[4];
	return at && sscanf(at + strlen(field), " %u %u %u %u", &id[0], &id[1], &id[2], &id[3]) ==
	                     4 && id[0] == want && id[1] == want && id[2] == want && id[3] == want;
}

/* "Field:\tVALUE" with exactly that value ("Groups:" with none: ""). */
static bool field_is(const char *status, const char *field, const char *want)
{
	const char *at = strstr(status, field);
	if (!at)
		return false;
	at += strlen(field);
	while (*at == '\t' || *at == ' ')
		at++;
	size_t n = strcspn(at, "\n");
	while (n && (at[n - 1] == ' ' || at[n - 1] == '\t'))
		n--;
	return n == strlen(want) && !strncmp(at, want, n);
}

/* "CapEff:" and the others: 0. */
static bool caps_zero(const char *status, const char *field)
{
	const char *at = strstr(status, field);
	unsigned long long caps = 1;
	return at && sscanf(at + strlen(field), " %llx", &caps) == 1 && caps == 0;
}

/* One thread's ids and capabilities, from /proc/self/task/TID/status. */
static kms_status check_task(const kmsd_config *cfg, const char *tid)
{
	char path[64], status[STATUS_MAX];
	snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
	FILE *f = fopen(path, "r");
	if (!f) /* a thread that just ended */
		return errno == ENOENT ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "%s: %s", path,
		                                            strerror(errno));
	size_t len = fread(status, 1, sizeof status - 1, f);
	fclose(f);
	status[len] = '\0';
	static const char *const caps[] = { "CapInh:", "CapPrm:", "CapEff:", "CapAmb:" };
	if (!ids_are(status, "Uid:", cfg->run_uid) || !ids_are(status, "Gid:", cfg->run_gid))
		return KMS_FAIL(KMS_INTERNAL, "thread %s still has another user or group than %s",
		                tid, cfg->run_user);
	for (size_t i = 0; i < sizeof caps / sizeof *caps; i++)
		if (!caps_zero(status, caps[i]))
			return KMS_FAIL(KMS_INTERNAL, "thread %s still has capabilities (%s)", tid,
			                caps[i]);
	if (!field_is(status, "Groups:", ""))
		return KMS_FAIL(KMS_INTERNAL, "thread %s still has supplementary groups", tid);
	if (!field_is(status, "NoNewPrivs:", "1"))
		return KMS_FAIL(KMS_INTERNAL, "thread %s may still gain privileges (no_new_privs "
		                "unset)", tid);
	return KMS_OK;
}

static kms_status check_every_task(const kmsd_config *cfg)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return KMS_FAIL(KMS_INTERNAL, "/proc/self/task: %s", strerror(errno));
	kms_status st = KMS_OK;
	unsigned seen = 0;
	struct dirent *e;
	while (st == KMS_OK && (e = readdir(d)) && seen < TASKS_MAX)
		if (e->d_name[0] != '.') {
			seen++;
			st = check_task(cfg, e->d_name);
		}
	closedir(d);
	if (st == KMS_OK && seen == TASKS_MAX)
		st = KMS_FAIL(KMS_INTERNAL, "more than %u threads to check", TASKS_MAX);
	return st;
}

kms_status kmsd_privs_drop(const kmsd_config *cfg)
{
	if (setgroups(0, NULL) != 0 || setgid(cfg->run_gid) != 0 || setuid(cfg->run_uid) != 0)
		return KMS_FAIL(KMS_INTERNAL, "cannot switch to user %s: %s: kmsd stops rather "
		                "than run as root", cfg->run_user, strerror(errno));
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* a change of ids resets it */
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	bool same = getresuid(&ru, &eu, &su) == 0 && getresgid(&rg, &eg, &sg) == 0 &&
	            ru == cfg->run_uid && eu == cfg->run_uid && su == cfg->run_uid &&
	            rg == cfg->run_gid && eg == cfg->run_gid && sg == cfg->run_gid &&
	            getgroups(0, NULL) == 0;
	if (!same || setuid(0) == 0)
		return KMS_FAIL(KMS_INTERNAL, "switched to user %s, yet kmsd keeps another id or "
		                "may return to root: it stops", cfg->run_user);
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return KMS_FAIL(KMS_INTERNAL, "no_new_privs is not set: kmsd stops");
	if (check_every_task(cfg) != KMS_OK) {
		char why[KMS_ERROR_MAX / 2];
		snprintf(why, sizeof why, "%s", kms_error_message());
		return KMS_FAIL(KMS_INTERNAL, "after switching to user %s: %s: kmsd stops",
		                cfg->run_user, why);
	}
	kms_log("info", "running as user %s (uid %u, gid %u), no capabilities, no supplementary "
	        "groups", cfg->run_user, (unsigned)cfg->run_uid, (unsigned)cfg->run_gid);
	return KMS_OK;
}
